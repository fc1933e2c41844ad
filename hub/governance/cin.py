"""The children in need (CIN) census return's field definitions, and a check of a return file against them.

Encoded from the Department for Education's "Children in need census 2025 to 2026: business and
technical specification" (collection year 2026: the period 1 April 2025 to 31 March 2026, reference
date 31 March 2026): the XML layout ``Message`` / ``Header`` / ``Children`` / ``Child`` /
``ChildIdentifiers``, ``ChildCharacteristics``, ``CINdetails`` with its ``Assessments``,
``CINPlanDates``, ``Section47`` and ``ChildProtectionPlans`` (with ``Reviews``) groups; the item names,
whether each is required, its format, and the code sets of the items the hub writes:
``ReferralSource`` (N00152), ``PrimaryNeedCode`` (N00101), ``ReasonForClosure`` (N00103) and
``InitialCategoryOfAbuse`` / ``LatestCategoryOfAbuse`` (N00113 / N00114). The child's identity and
characteristics (LAchildID, UPN, sex, ethnicity, disabilities) are the local authority's own: the hub
holds none of them, so a return it writes leaves them for the authority's case-management system (each
``Child`` carries a comment with the hub's child id to join on), and :func:`check` reports them as
``to complete``. Assessment factors and section 47 enquiries are not among what agencies send the hub,
so their groups are checked for layout and dates only.

The code sets are the same as the social-care mapping's (``connectors/mappings/social_care/la-generic.json``,
``codes``), which a test keeps equal.
"""

from __future__ import annotations

from lxml import etree

from hub.governance.dfe_layout import Item, Report, check_layout, group, header

SPECIFICATION = ("DfE children in need census 2025 to 2026 business and technical specification "
                 "(collection year 2026, 1 April 2025 to 31 March 2026)")
COLLECTION = "CIN"
YEAR = 2026

#: ReferralSource (N00152): who referred the child to children's social care.
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
#: PrimaryNeedCode (N00101): the child's primary category of need.
PRIMARY_NEED = {"N0": "Not stated", "N1": "Abuse or neglect", "N2": "Child's disability or illness",
                "N3": "Parental illness or disability", "N4": "Family in acute stress", "N5": "Family dysfunction",
                "N6": "Socially unacceptable behaviour", "N7": "Low income", "N8": "Absent parenting",
                "N9": "Cases other than children in need"}
#: ReasonForClosure (N00103): why the episode of need ended.
REASON_FOR_CLOSURE = {"RC1": "Adopted", "RC2": "Died", "RC3": "Child arrangements order",
                      "RC4": "Special guardianship order", "RC5": "Transferred to services of another LA",
                      "RC6": "Transferred to adult social care", "RC7": "Services ceased for any other reason",
                      "RC8": "Case closed after assessment, no further action",
                      "RC9": "Case closed after assessment, referred to early help"}
#: InitialCategoryOfAbuse (N00113) and LatestCategoryOfAbuse (N00114) of a child protection plan.
CATEGORY_OF_ABUSE = {"NEG": "Neglect", "PHY": "Physical abuse", "SAB": "Sexual abuse", "EMO": "Emotional abuse",
                     "MUL": "Multiple"}

REVIEWS = group("Reviews", (Item("CPPreviewDate", required=True, kind="date"),))
CHILD_PROTECTION_PLANS = group("ChildProtectionPlans", (
    Item("CPPstartDate", required=True, kind="date"), Item("CPPendDate", kind="date"),
    Item("InitialCategoryOfAbuse", required=True, kind="code", codes=CATEGORY_OF_ABUSE),
    Item("LatestCategoryOfAbuse", required=True, kind="code", codes=CATEGORY_OF_ABUSE),
    Item("NumberOfPreviousCPP", required=True, kind="int"),
), ((REVIEWS, False),))
SECTION_47 = group("Section47", (
    Item("S47ActualStartDate", required=True, kind="date"), Item("InitialCPCtarget", kind="date"),
    Item("DateOfInitialCPC", kind="date"), Item("ICPCnotRequired", kind="bool"),
))
CIN_PLAN_DATES = group("CINPlanDates", (Item("CINPlanStartDate", required=True, kind="date"),
                                        Item("CINPlanEndDate", kind="date")))
ASSESSMENTS = group("Assessments", (
    Item("AssessmentActualStartDate", required=True, kind="date"), Item("AssessmentInternalReviewDate", kind="date"),
    Item("AssessmentAuthorisationDate", kind="date"),
), ((group("FactorsIdentifiedAtAssessment", (Item("AssessmentFactors", max_len=3),)), False),))
CIN_DETAILS = group("CINdetails", (
    Item("CINreferralDate", required=True, kind="date"),
    Item("ReferralSource", required=True, kind="code", codes=REFERRAL_SOURCE),
    Item("PrimaryNeedCode", required=True, kind="code", codes=PRIMARY_NEED),
    Item("CINclosureDate", kind="date"), Item("ReasonForClosure", kind="code", codes=REASON_FOR_CLOSURE),
    Item("DateOfInitialCPC", kind="date"), Item("ReferralNFA", required=True, kind="bool"),
), ((ASSESSMENTS, True), (CIN_PLAN_DATES, True), (SECTION_47, True), (CHILD_PROTECTION_PLANS, True)),
    required=True)
CHILD_IDENTIFIERS = group("ChildIdentifiers", (
    Item("LAchildID", required=True, max_len=10, by_la=True), Item("UPN", max_len=13, by_la=True),
    Item("FormerUPN", max_len=13, by_la=True), Item("UPNunknown", by_la=True),
    Item("PersonBirthDate", kind="date"), Item("ExpectedPersonBirthDate", kind="date"),
    Item("Sex", required=True, by_la=True), Item("PersonDeathDate", kind="date"),
), required=True)
CHILD_CHARACTERISTICS = group("ChildCharacteristics", (Item("Ethnicity", required=True, by_la=True),), (
    (group("Disabilities", (Item("Disability", by_la=True),)), False),))
CHILD = group("Child", (), ((CHILD_IDENTIFIERS, False), (CHILD_CHARACTERISTICS, False), (CIN_DETAILS, True)))
MESSAGE = group("Message", (), (
    (header(COLLECTION, "Children in need census"), False),
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
