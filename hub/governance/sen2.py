"""The SEN2 return's field definitions (collection year 2026), and a check of a return file against them.

SEN2 is the special educational needs person-level survey that local authorities in **England** make
to the Department for Education each January (census date: the third Thursday of January; the 2026
collection covers requests, assessments and plans up to 15 January 2026). Sources, by what each
gives (docs/operations.md, "DfE returns: sources", lists them with the decisions taken):

* **Layout** (modules, element names, their order, which are mandatory, formats and patterns): the
  DfE SEN2 2024 XML schema (``Message`` / ``Header`` / ``Persons`` / ``Person`` / ``Requests`` /
  ``Assessment`` / ``NamedPlan`` / ``PlanDetail``, and ``Requests`` / ``ActivePlans`` /
  ``PlacementDetail`` and ``SENneed``), as transcribed in SocialFinanceDigitalLabs/liia-tools
  (``liiatools/spec/sen2/SEN2_schema_2024.xsd``). One ``Requests`` element is one request; a person
  has one or more.
* **2026 change**: ``RequestSource`` after ``ReceivedDate``, from the DfE "Special educational needs
  survey guide 2026" as read by data-to-insight's SEN2 app (``apps/015_SEN2_app``), which lists the
  2026 items in the 2024 order with RequestSource added and its codes 1 to 5. Whether it is
  mandatory: NOT CONFIRMED (encoded as optional).
* **Code sets**: each constant below names its source and year. ``SENtype`` gains ``DS`` (Down
  syndrome) in the DfE "SEN2 data collection 2025 guide" v1.4 (transcribed in MastodonC/witan.sen2,
  ``dictionary.clj``), which the 2026 guide keeps.
* **Week20** is the DfE's "20-week time limit exceptions apply" flag (the guide's item, as MastodonC's
  reading of the COLLECT export labels it; a yes/no in the 2024 schema): true when one of the
  exceptions in the SEND Regulations 2014 applies to the request. It does **not** say whether the
  plan was issued within 20 weeks.

The person-identity items (names, sex, ethnicity, postcode, UPN) and the placement facts the hub does
not hold (the DMO and DCO answers, SEN unit and resourced provision indicators, placement entry dates)
are the local authority's: a return the hub writes leaves them for the authority's own system to
complete (each ``Person`` carries a comment with the hub's pseudonymous child id to join on), and
:func:`check` reports them as ``to_complete``, not as errors.

:func:`check` answers the problems of a return as text, one per item, naming the XML path and the
rule; an empty list means the file is in the DfE layout with every present value of the right form.
"""

from __future__ import annotations

from lxml import etree

from hub.governance.dfe_layout import Item, Report, check_layout, group, header

SPECIFICATION = ("DfE SEN2 2026 (census 15 January 2026): the 2024 SEN2 XML schema's layout with the 2026 "
                 "RequestSource and the 2025 guide v1.4 code lists")
COLLECTION = "SEN2"
YEAR = 2026

#: RequestSource (SEN2 2026, new that year): who asked for the EHC needs assessment. Source: the 2026
#: SEN2 guide as read by data-to-insight's SEN2 app (apps/015_SEN2_app).
REQUEST_SOURCE = {"1": "Young person or parent", "2": "School or other education setting",
                  "3": "Health care professionals", "4": "Social care professionals", "5": "Other"}
#: RequestOutcome (SEN2 2024 schema, ``requestoutcometype``): what became of the request for an EHC
#: needs assessment. That the 2025 and 2026 lists are unchanged is NOT CONFIRMED (no transcription found).
REQUEST_OUTCOME = {"Y": "LA proceeded with an assessment", "N": "LA decided not to proceed with an assessment",
                   "A": "Decision yet to be made",
                   "W": "Request withdrawn or ceased before decision to assess was made",
                   "H": "Historical - decision to issue was made before the latest collection period"}
#: AssessmentOutcome (SEN2 2024 schema, ``assessmentoutcometype``): what became of the EHC needs
#: assessment. That the 2025 and 2026 lists are unchanged is NOT CONFIRMED (no transcription found).
ASSESSMENT_OUTCOME = {"Y": "It was decided an EHC plan would be issued",
                      "N": "It was decided an EHC plan would not be issued", "A": "Decision has not yet been made",
                      "W": "Request withdrawn or ceased before decision whether to issue was made",
                      "H": "Historical - decision to issue was made before the latest collection period "
                           "or plan has been transferred from another local authority"}
#: CeaseReason (SEN2 2025 guide v1.4, item 4.6; the same codes in the 2024 schema): why an EHC plan ended.
CEASE_REASON = {"1": "Reached maximum age", "2": "Ongoing educational or training needs being met without an EHC plan",
                "3": "Moved on to higher education", "4": "Moved on to paid employment, excluding apprenticeships",
                "5": "Transferred to another local authority in England",
                "6": "Young person no longer wishes to engage in education or training",
                "7": "Person has moved outside England", "8": "Person deceased", "9": "Other"}
#: SENtype (SEN2 2025 guide v1.4, item 5.8a; the 2024 schema lacks DS): a type of need of an active plan.
SEN_TYPE = {"SPLD": "Specific learning difficulty", "MLD": "Moderate learning difficulty",
            "SLD": "Severe learning difficulty", "PMLD": "Profound and multiple learning difficulty",
            "SEMH": "Social, emotional and mental health", "SLCN": "Speech, language and communication needs",
            "HI": "Hearing impairment", "VI": "Vision impairment", "MSI": "Multi-sensory impairment",
            "PD": "Physical disability", "ASD": "Autistic spectrum disorder", "DS": "Down syndrome",
            "OTH": "Other difficulty"}
#: SENsetting (SEN2 2025 guide v1.4, items 4.7c and 5.7c; the same codes in the 2024 schema): the
#: kind of placement when it has no URN or UKPRN.
SEN_SETTING = {"OLA": "Other - arrangements made by the local authority under section 61 of the 2014 Act (EOTAS)",
               "OPA": "Other - arrangements made by parents or young person under section 42(5), excluding EHE",
               "EHE": "Elective home education", "EYP": "Early years provider with no URN",
               "OTH": "Other - a type of setting is specified but no setting is named",
               "NEET": "Not in education, employment or training (aged 16 to 25)",
               "NIEC": "Not in education or training - notice to cease issued",
               "NIEO": "Not in education or training - other"}
#: ReviewOutcome (SEN2 2024 schema, ``reviewoutcometype``): the annual review's decision.
REVIEW_OUTCOME = {"A": "Amend the EHC plan", "C": "Cease the EHC plan", "M": "Maintain the EHC plan"}
#: PlanRes / Res (SEN2 2024 schema, ``restype``): residential placement weeks.
RESIDENTIAL = {"A": "38 to 51 weeks", "B": "52 weeks"}
#: PlanWBP / WBP (SEN2 2024 schema, ``wbptype``): work-based learning activity.
WORK_BASED = {"A": "Apprenticeships", "T": "Traineeships", "S": "Supported internships"}
#: DP (SEN2 2024 schema, ``dptype``): what a personal budget's direct payments are for.
DIRECT_PAYMENTS = {"E": "Education only", "S": "Social care only", "H": "Health only",
                   "I": "Integrated payment for a combination of the above"}
#: Sex (SEN2 2024 schema, ``sextype``).
SEX = {"M": "Male", "F": "Female", "U": "Unknown"}
#: UPNunknown (SEN2 2024 schema, ``unknownupntype``): UN1 to UN10. Their meanings: NOT CONFIRMED.
UPN_UNKNOWN = {f"UN{n}": "reason NOT CONFIRMED" for n in range(1, 11)}
#: DMO and DCO (SEN2 2024 schema: Y, N or R, mandatory in ``Source``). Their meanings: NOT CONFIRMED.
Y_N_R = {"Y": "meaning NOT CONFIRMED", "N": "meaning NOT CONFIRMED", "R": "meaning NOT CONFIRMED"}
#: The yes/no items (SEN2 2024 schema, ``yesnotype``). The hub writes 1 and 0.
YES_NO = {"true": "Yes", "false": "No", "TRUE": "Yes", "FALSE": "No", "1": "Yes", "0": "No"}
#: Ethnicity (SEN2 2024 schema, ``ethnicitytype``: the DfE main categories).
ETHNICITY = dict.fromkeys(("WBRI", "WIRI", "WIRT", "WOTH", "WROM", "MWBC", "MWBA", "MWAS", "MOTH", "AIND", "APKN",
                           "ABAN", "AOTH", "BCRB", "BAFR", "BOTH", "CHNE", "OOTH", "REFU", "NOBT"), "")


def _yes_no(name: str, required: bool = False, by_la: bool = False) -> Item:
    return Item(name, required=required, kind="code", codes=YES_NO, code_set="yes/no", by_la=by_la)


def _code(name: str, codes: dict[str, str], code_set: str = "", *, required: bool = False,
          by_la: bool = False) -> Item:
    return Item(name, required=required, kind="code", codes=codes, code_set=code_set or name, by_la=by_la)


_URN, _UKPRN = Item("URN", pattern=r"\d{6}"), Item("UKPRN", pattern=r"\d{8}")
_SETTING = _code("SENSetting", SEN_SETTING, "SENsetting")  # one of URN, UKPRN, SENSetting: see _cross_checks
_RANK = _code("PlacementRank", {"1": "First", "2": "Second"}, required=True)

PLAN_DETAIL = group("PlanDetail", (
    _URN, _UKPRN, _SETTING, Item("SENSettingOther", max_len=100), _RANK,
    _yes_no("SENunitIndicator", True, by_la=True), _yes_no("ResourcedProvisionIndicator", True, by_la=True),
), required=True, by_la=True)
NAMED_PLAN = group("NamedPlan", (
    Item("StartDate", required=True, kind="date"), _code("PlanRes", RESIDENTIAL), _code("PlanWBP", WORK_BASED),
    _yes_no("PB"), _yes_no("OA"), _code("DP", DIRECT_PAYMENTS), Item("CeaseDate", kind="date"),
    _code("CeaseReason", CEASE_REASON),
), ((PLAN_DETAIL, 2),), order=("StartDate", "PlanDetail", "PlanRes", "PlanWBP", "PB", "OA", "DP", "CeaseDate",
                               "CeaseReason"))
ASSESSMENT = group("Assessment", (
    _code("AssessmentOutcome", ASSESSMENT_OUTCOME, required=True), Item("AssessmentOutcomeDate", kind="date"),
    _yes_no("AssessmentMediation"), _yes_no("AssessmentTribunal"), _yes_no("OtherMediation"),
    _yes_no("OtherTribunal"), _yes_no("Week20"),
), ((NAMED_PLAN, False),))
PLACEMENT_DETAIL = group("PlacementDetail", (
    _URN, _UKPRN, _SETTING, Item("SENSettingOther", max_len=100), _RANK,
    Item("EntryDate", required=True, kind="date", by_la=True), Item("LeavingDate", kind="date"),
    _yes_no("SENunitIndicator", True, by_la=True), _yes_no("ResourcedProvisionIndicator", True, by_la=True),
    _code("Res", RESIDENTIAL), _code("WBP", WORK_BASED),
), required=True, by_la=True)
SEN_NEED = group("SENneed", (_code("SENtype", SEN_TYPE, required=True),
                             _code("SENtypeRank", {"1": "Primary", "2": "Secondary"}, required=True)),
                 required=True, by_la=True)
ACTIVE_PLANS = group("ActivePlans", (
    Item("TransferLA", pattern=r"\d{3}"), Item("ReviewMeeting", kind="date"), _code("ReviewOutcome", REVIEW_OUTCOME),
    Item("LastReview", kind="date"),
), ((PLACEMENT_DETAIL, 2), (SEN_NEED, 2)), order=("TransferLA", "PlacementDetail", "SENneed", "ReviewMeeting",
                                                 "ReviewOutcome", "LastReview"))
REQUESTS = group("Requests", (
    Item("ReceivedDate", kind="date"), _code("RequestSource", REQUEST_SOURCE), _yes_no("RYA"),
    Item("RequestOutcomeDate", kind="date"), _code("RequestOutcome", REQUEST_OUTCOME, required=True),
    _yes_no("RequestMediation"), _yes_no("RequestTribunal"), Item("Exported", pattern=r"\d{3}"),
), ((ASSESSMENT, False), (ACTIVE_PLANS, False)), required=True)
PERSON = group("Person", (
    Item("Surname", required=True, by_la=True), Item("Forename", required=True, by_la=True),
    Item("PersonBirthDate", required=True, kind="date", by_la=True),
    _code("Sex", SEX, required=True, by_la=True), _code("Ethnicity", ETHNICITY, required=True, by_la=True),
    Item("PostCode", required=True, by_la=True, max_len=8),
    Item("UPN", by_la=True, pattern=r"[A-Za-z]\d{12}|[A-Za-z]\d{11}[A-Za-z]"),
    Item("UniqueLearnerNumber", by_la=True, pattern=r"\d{10}"), _code("UPNunknown", UPN_UNKNOWN, by_la=True),
), ((REQUESTS, True),))
MESSAGE = group("Message", (), (
    (header(COLLECTION, COLLECTION, serial_pattern=r"\d{3}\d*", source_extra=(
        _code("DMO", Y_N_R, required=True, by_la=True), _code("DCO", Y_N_R, required=True, by_la=True))), False),
    (group("Persons", (), ((PERSON, True),), required=True), False),
), required=True)


def _cross_checks(root: etree._Element, report: Report) -> None:
    """The rules between items of one request (the guide's), each problem naming the request and the rule."""
    for i, req in enumerate(root.iterfind("Persons/Person/Requests"), 1):
        received = req.findtext("ReceivedDate")
        outcome, outcome_date = req.findtext("RequestOutcome"), req.findtext("RequestOutcomeDate")
        if received and outcome_date and outcome_date < received:
            report.problems.append(f"Requests {i}: RequestOutcomeDate is before ReceivedDate")
        if outcome in ("Y", "N", "W") and outcome_date is None:
            report.problems.append(f"Requests {i}: RequestOutcome {outcome} needs a RequestOutcomeDate")
        assessment = req.find("Assessment")
        if assessment is not None and outcome not in ("Y", "H"):
            report.problems.append(f"Requests {i}: an Assessment needs RequestOutcome Y (proceeded) or H")
        plan = req.find("Assessment/NamedPlan")
        if plan is not None:
            start = plan.findtext("StartDate")
            if received and start and start < received:
                report.problems.append(f"Requests {i}: NamedPlan/StartDate is before ReceivedDate")
            if (plan.findtext("CeaseDate") is None) != (plan.findtext("CeaseReason") is None):
                report.problems.append(f"Requests {i}: CeaseDate and CeaseReason go together")
            if req.findtext("Assessment/AssessmentOutcome") not in ("Y", "H"):
                report.problems.append(f"Requests {i}: a NamedPlan needs AssessmentOutcome Y (issue) or H")
        for place in (*req.iterfind("Assessment/NamedPlan/PlanDetail"), *req.iterfind("ActivePlans/PlacementDetail")):
            if all(place.findtext(t) is None for t in ("URN", "UKPRN", "SENSetting")):
                report.problems.append(f"Requests {i}: {place.tag} needs one of URN, UKPRN or SENSetting")


def check(xml: bytes) -> Report:
    """Check a SEN2 return against the encoded field definitions (layout, order, formats, code sets)."""
    report, root = check_layout(xml, MESSAGE, SPECIFICATION)
    if root is not None:
        _cross_checks(root, report)
    return report
