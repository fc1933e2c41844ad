"""The children in need (CIN) census return's field definitions, and a check of a return file against them.

The CIN census is the Department for Education's collection from local authorities in **England**
(collection year 2026: the period 1 April 2025 to 31 March 2026, reference date 31 March 2026).
Sources (docs/operations.md, "DfE returns: sources", lists them with the decisions taken):

* **Layout** (element names, order, which are mandatory, formats and patterns) and **code sets**: the
  DfE CIN census XML schema, 2024 edition, as transcribed in SocialFinanceDigitalLabs/liia-tools
  (``liiatools/cin_census_pipeline/spec/CIN_schema_2024.xsd``; the 2022 edition there,
  ``liiatools/spec/cin_census/cin-2022.xsd``, has the same CINdetails items). ``Message`` /
  ``Header`` / ``Children`` / ``Child`` / ``ChildIdentifiers``, ``ChildCharacteristics``,
  ``CINdetails`` with its ``Assessments``, ``CINPlanDates``, ``Section47``, ``ReferralNFA`` (after the
  Section47 groups) and ``ChildProtectionPlans`` (with ``Reviews``).
* That the 2025-26 items and codes are those of the 2024 schema is NOT CONFIRMED: the "children in
  need census 2024 to 2025" guide (v1.2) and the 2025-26 specification were not available to check.
  In particular the child's sex is encoded as the schema's ``GenderCurrent`` (1, 2, 0, 9); whether a
  later guide renames it is NOT CONFIRMED.

The child's identity and characteristics (LAchildID, UPN, gender, ethnicity, disabilities) are the
local authority's own: the hub holds none of them, so a return it writes leaves them for the
authority's case-management system (each ``Child`` carries a comment with the hub's child id to join
on), and :func:`check` reports them as ``to complete``. Assessment factors and section 47 enquiries
are not among what agencies send the hub, so their groups are checked for layout and codes only.

The code sets the hub writes are the same as the social-care mapping's
(``connectors/mappings/social_care/la-generic.json``, ``codes``), which a test keeps equal.
"""

from __future__ import annotations

from lxml import etree

from hub.governance.dfe_layout import Item, Report, check_layout, group, header

SPECIFICATION = ("DfE children in need census 2025 to 2026 (collection year 2026, 1 April 2025 to 31 March 2026): "
                 "the 2024 CIN census XML schema's items and codes")
COLLECTION = "CIN"
YEAR = 2026

#: ReferralSource (N00152; CIN 2024 schema ``referralsourcetype``): who referred the child to children's social care.
REFERRAL_SOURCE = {
    "1A": "Individual - family member, relative or carer",
    "1B": "Individual - acquaintance (including neighbours and child minders)",
    "1C": "Individual - self", "1D": "Individual - other (including strangers, MPs)",
    "2A": "Schools", "2B": "Education services",
    "3A": "Health services - GP", "3B": "Health services - health visitor", "3C": "Health services - school nurse",
    "3D": "Health services - other primary health services",
    "3E": "Health services - A&E (emergency department)", "3F": "Health services - other (e.g. hospice)",
    "4": "Housing (LA housing or housing association)",
    "5A": "LA services - social care (e.g. adults' social care)",
    "5B": "LA services - other internal (e.g. youth offending team)",
    "5C": "LA services - external (e.g. from another local authority's adult social care)",
    "5D": "LA services - early help", "6": "Police",
    "7": "Other legal agency (including courts, probation, immigration, CAFCASS and prison)",
    "8": "Other (including children's centres, independent agency providers and voluntary organisations)",
    "9": "Anonymous", "10": "Unknown"}
#: PrimaryNeedCode (N00101; CIN 2024 schema ``primaryneedcodetype``): the child's primary category of need.
PRIMARY_NEED = {"N0": "Not stated", "N1": "Abuse or neglect", "N2": "Child's disability or illness",
                "N3": "Parental illness or disability", "N4": "Family in acute stress", "N5": "Family dysfunction",
                "N6": "Socially unacceptable behaviour", "N7": "Low income", "N8": "Absent parenting",
                "N9": "Cases other than children in need"}
#: ReasonForClosure (N00103; CIN 2024 schema ``reasonforclosuretype``): why the episode of need ended.
REASON_FOR_CLOSURE = {"RC1": "Adopted", "RC2": "Died", "RC3": "Child arrangements order",
                      "RC4": "Special guardianship order", "RC5": "Transferred to services of another LA",
                      "RC6": "Transferred to adult social care", "RC7": "Services ceased for any other reason",
                      "RC8": "Case closed after assessment, no further action",
                      "RC9": "Case closed after assessment, referred to early help"}
#: InitialCategoryOfAbuse (N00113) and LatestCategoryOfAbuse (N00114) of a child protection plan (CIN 2024
#: schema ``categoryofabuse``).
CATEGORY_OF_ABUSE = {"NEG": "Neglect", "PHY": "Physical abuse", "SAB": "Sexual abuse", "EMO": "Emotional abuse",
                     "MUL": "Multiple"}

#: GenderCurrent (CIN 2024 schema ``gendertype``).
GENDER = {"1": "Male", "2": "Female", "0": "Not recorded or unborn", "9": "Indeterminate"}
#: UPNunknown (CIN 2024 schema ``unknownupntype``): UN1 to UN7. Their meanings: NOT CONFIRMED.
UPN_UNKNOWN = {f"UN{n}": "reason NOT CONFIRMED" for n in range(1, 8)}
#: Disability (CIN 2024 schema ``disabilitytype``).
DISABILITY = {"NONE": "No disability", "MOB": "Mobility", "HAND": "Hand function", "PC": "Personal care",
              "INC": "Incontinence", "COMM": "Communication", "LD": "Learning", "HEAR": "Hearing", "VIS": "Vision",
              "BEH": "Behaviour", "CON": "Consciousness", "AUT": "Autism", "DDA": "Other"}
#: AssessmentFactors (CIN 2024 schema ``assessmentfactorstype``): the factors identified at assessment.
ASSESSMENT_FACTORS = dict.fromkeys((
    "1A", "1B", "1C", "2A", "2B", "2C", "3A", "3B", "3C", "4A", "4B", "4C", "5A", "5B", "5C", "6A", "6B", "6C", "7A",
    "8B", "8C", "8D", "8E", "8F", "9A", "10A", "11A", "12A", "13A", "14A", "15A", "16A", "17A", "18B", "18C", "19B",
    "19C", "20", "21", "22A", "23A", "24A"), "")
#: Ethnicity (CIN 2024 schema ``ethnicitytype``: the DfE main categories).
ETHNICITY = dict.fromkeys(("WBRI", "WIRI", "WIRT", "WOTH", "WROM", "MWBC", "MWBA", "MWAS", "MOTH", "AIND", "APKN",
                           "ABAN", "AOTH", "BCRB", "BAFR", "BOTH", "CHNE", "OOTH", "REFU", "NOBT"), "")
#: The yes/no items (CIN 2024 schema ``yesnotype``).
YES_NO = {"true": "Yes", "false": "No", "TRUE": "Yes", "FALSE": "No", "1": "Yes", "0": "No"}
_UPN = r"[A-Za-z]\d{12}|[A-Za-z]\d{11}[A-Za-z]"


def _code(name: str, codes: dict[str, str], code_set: str = "", *, required: bool = False,
          by_la: bool = False) -> Item:
    return Item(name, required=required, kind="code", codes=codes, code_set=code_set or name, by_la=by_la)


REVIEWS = group("Reviews", (Item("CPPreviewDate", required=True, kind="date"),))
CHILD_PROTECTION_PLANS = group("ChildProtectionPlans", (
    Item("CPPstartDate", required=True, kind="date"), Item("CPPendDate", kind="date"),
    _code("InitialCategoryOfAbuse", CATEGORY_OF_ABUSE, "CategoryOfAbuse", required=True),
    _code("LatestCategoryOfAbuse", CATEGORY_OF_ABUSE, "CategoryOfAbuse", required=True),
    # the 2024 schema's transcription types it positiveInteger (1 and more), the guide counts earlier
    # plans from 0: which is right is NOT CONFIRMED, so any whole number passes here
    Item("NumberOfPreviousCPP", required=True, kind="int"),
), ((REVIEWS, False),))
SECTION_47 = group("Section47", (
    Item("S47ActualStartDate", required=True, kind="date"), Item("InitialCPCtarget", kind="date"),
    Item("DateOfInitialCPC", kind="date"), _code("ICPCnotRequired", YES_NO, "yes/no", required=True),
))
CIN_PLAN_DATES = group("CINPlanDates", (Item("CINPlanStartDate", required=True, kind="date"),
                                        Item("CINPlanEndDate", kind="date")))
ASSESSMENTS = group("Assessments", (
    Item("AssessmentActualStartDate", required=True, kind="date"), Item("AssessmentInternalReviewDate", kind="date"),
    Item("AssessmentAuthorisationDate", kind="date"),
), ((group("FactorsIdentifiedAtAssessment", (_code("AssessmentFactors", ASSESSMENT_FACTORS, required=True),)),
     False),))
CIN_DETAILS = group("CINdetails", (
    Item("CINreferralDate", required=True, kind="date"),
    _code("ReferralSource", REFERRAL_SOURCE, required=True), _code("PrimaryNeedCode", PRIMARY_NEED),
    Item("CINclosureDate", kind="date"), _code("ReasonForClosure", REASON_FOR_CLOSURE),
    Item("DateOfInitialCPC", kind="date"), _code("ReferralNFA", YES_NO, "yes/no", required=True),
), ((ASSESSMENTS, True), (CIN_PLAN_DATES, True), (SECTION_47, True), (CHILD_PROTECTION_PLANS, True)),
    required=True, order=("CINreferralDate", "ReferralSource", "PrimaryNeedCode", "CINclosureDate", "ReasonForClosure",
                          "DateOfInitialCPC", "Assessments", "CINPlanDates", "Section47", "ReferralNFA",
                          "ChildProtectionPlans"))
CHILD_IDENTIFIERS = group("ChildIdentifiers", (
    Item("LAchildID", required=True, max_len=10, by_la=True), Item("UPN", pattern=_UPN, by_la=True),
    Item("FormerUPN", pattern=_UPN, by_la=True), _code("UPNunknown", UPN_UNKNOWN, by_la=True),
    Item("PersonBirthDate", kind="date"), Item("ExpectedPersonBirthDate", kind="date"),
    _code("GenderCurrent", GENDER, required=True, by_la=True), Item("PersonDeathDate", kind="date"),
), required=True)
CHILD_CHARACTERISTICS = group("ChildCharacteristics", (_code("Ethnicity", ETHNICITY, required=True, by_la=True),), (
    (group("Disabilities", (_code("Disability", DISABILITY, required=True, by_la=True),)), False),))
CHILD = group("Child", (), ((CHILD_IDENTIFIERS, False), (CHILD_CHARACTERISTICS, False), (CIN_DETAILS, True)))
MESSAGE = group("Message", (), (
    (header(COLLECTION, "Children in need census", serial_pattern=r"\d{3}\d*"), False),
    (group("Children", (), ((CHILD, True),), required=True), False),
), required=True)


def _cross_checks(root: etree._Element, report: Report) -> None:
    """The specification's rules between items of one episode of need."""
    reference = root.findtext("Header/CollectionDetails/ReferenceDate") or ""
    for i, cin in enumerate(root.iterfind("Children/Child/CINdetails"), 1):
        referral = cin.findtext("CINreferralDate") or ""
        closure = cin.findtext("CINclosureDate")
        if reference and referral > reference:
            report.problems.append(f"CINdetails {i}: CINreferralDate is after the ReferenceDate")
        if closure is not None and closure < referral:
            report.problems.append(f"CINdetails {i}: CINclosureDate is before CINreferralDate")
        if (closure is None) != (cin.findtext("ReasonForClosure") is None):
            report.problems.append(f"CINdetails {i}: CINclosureDate and ReasonForClosure go together")
        for plan in cin.iterfind("ChildProtectionPlans"):
            start, end = plan.findtext("CPPstartDate") or "", plan.findtext("CPPendDate")
            if start < referral:
                report.problems.append(f"CINdetails {i}: CPPstartDate is before CINreferralDate")
            if end is not None and end < start:
                report.problems.append(f"CINdetails {i}: CPPendDate is before CPPstartDate")


def check(xml: bytes) -> Report:
    """Check a CIN census return against the encoded field definitions (layout, order, formats, code sets)."""
    report, root = check_layout(xml, MESSAGE, SPECIFICATION)
    if root is not None:
        _cross_checks(root, report)
    return report
