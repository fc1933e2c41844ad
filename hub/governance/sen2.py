"""The SEN2 return's field definitions, and a check of a return file against them.

Encoded from the Department for Education's "SEN2 person level 2026" guide and technical
specification (collection year 2026, census date 15 January 2026): the XML layout ``Message`` /
``Header`` / ``Persons`` / ``Person`` / ``Requests`` / ``Request`` / ``Assessment`` / ``NamedPlan``
/ ``Placement``, the item names, whether each is required, its format and its code set. The
person-identity items (names, UPN, sex, ethnicity, postcode) are the local authority's own: the hub
holds none of them, so a return it writes leaves them for the authority's case-management system
to complete (each ``Person`` carries a comment with the hub's pseudonymous child id to join on),
and :func:`check` reports them as ``to complete``, not as errors.

:func:`check` answers the problems of a return as text, one per item, naming the XML path; an
empty list means the file is in the DfE layout with every present value in its code set.
"""

from __future__ import annotations

from lxml import etree

from hub.governance.dfe_layout import Item, Report, check_layout, group, header

SPECIFICATION = "DfE SEN2 person level 2026 technical specification (census date 15 January 2026)"
COLLECTION = "SEN2"
YEAR = 2026

#: SEN2 RequestSource (new for 2026): who asked for the EHC needs assessment.
REQUEST_SOURCE = {"1": "Young person or parent", "2": "School or other education setting",
                  "3": "Health care professionals", "4": "Social care professionals", "5": "Other"}
#: SEN2 RequestOutcome: what became of the request for an EHC needs assessment.
REQUEST_OUTCOME = {"A": "Decision to assess", "B": "Decision not to assess",
                   "W": "Request withdrawn or ceased before a decision whether to assess",
                   "H": "Historical: decision made before the return's first collection"}
#: SEN2 AssessmentOutcome: what became of the EHC needs assessment.
ASSESSMENT_OUTCOME = {"A": "Decision to issue an EHC plan", "B": "Decision not to issue an EHC plan",
                      "W": "Assessment withdrawn or ceased before a decision whether to issue",
                      "H": "Historical: decision made before the return's first collection"}
#: SEN2 CeaseReason: why an EHC plan ceased.
CEASE_REASON = {"1": "Reached maximum age", "2": "Needs met without an EHC plan",
                "3": "Moved on to higher education", "4": "Moved on to paid employment (not an apprenticeship)",
                "5": "Transferred to another local authority", "6": "Young person no longer wishes to engage",
                "7": "Moved outside England", "8": "Deceased", "9": "Other"}
#: SEN2 SENtype (the DfE common basic data set's SEN type codes): primary type of need.
SEN_TYPE = {"SPLD": "Specific learning difficulty", "MLD": "Moderate learning difficulty",
            "SLD": "Severe learning difficulty", "PMLD": "Profound and multiple learning difficulty",
            "SEMH": "Social, emotional and mental health", "SLCN": "Speech, language and communication needs",
            "HI": "Hearing impairment", "VI": "Vision impairment", "MSI": "Multi-sensory impairment",
            "PD": "Physical disability", "ASD": "Autistic spectrum disorder", "OTH": "Other difficulty or disability"}
#: SEN2 SENsetting: a placement with no URN or UKPRN.
SEN_SETTING = {"EHE": "Elective home education", "EOTAS": "Education otherwise than at school",
               "EYP": "Early years provider without a URN", "NEET": "Not in education, employment or training",
               "OTH": "Other"}
YES_NO = {"Y": "Yes", "N": "No"}


PLACEMENT = group("Placement", (
    Item("URN", kind="text", max_len=6), Item("UKPRN", kind="text", max_len=8),
    Item("SENsetting", kind="code", codes=SEN_SETTING), Item("PlacementRank", kind="int"),
    Item("EntryDate", kind="date"), Item("LeavingDate", kind="date"),
))
NAMED_PLAN = group("NamedPlan", (
    Item("StartDate", required=True, kind="date"), Item("SENtype", kind="code", codes=SEN_TYPE),
    Item("CeaseDate", kind="date"), Item("CeaseReason", kind="code", codes=CEASE_REASON),
), ((PLACEMENT, True),))
ASSESSMENT = group("Assessment", (
    Item("AssessmentOutcome", kind="code", codes=ASSESSMENT_OUTCOME), Item("AssessmentOutcomeDate", kind="date"),
    Item("Week20", kind="code", codes=YES_NO),
), ((NAMED_PLAN, False),))
REQUEST = group("Request", (
    Item("ReceivedDate", required=True, kind="date"), Item("RequestSource", kind="code", codes=REQUEST_SOURCE),
    Item("RequestOutcomeDate", kind="date"), Item("RequestOutcome", kind="code", codes=REQUEST_OUTCOME),
), ((ASSESSMENT, False),))
PERSON = group("Person", (
    Item("Surname", required=True, max_len=35, by_la=True), Item("Forename", required=True, max_len=35, by_la=True),
    Item("PersonBirthDate", required=True, kind="date", by_la=True), Item("Sex", required=True, by_la=True),
    Item("Ethnicity", by_la=True), Item("Postcode", by_la=True, max_len=8), Item("UPN", by_la=True, max_len=13),
    Item("UniqueLearnerNumber", by_la=True, max_len=10),
), ((group("Requests", (), ((REQUEST, True),), required=True), False),))
MESSAGE = group("Message", (), (
    (header(COLLECTION, COLLECTION), False),
    (group("Persons", (), ((PERSON, True),), required=True), False),
), required=True)

def _cross_checks(root: etree._Element, report: Report) -> None:
    """The specification's rules between items of one request."""
    for i, req in enumerate(root.iterfind("Persons/Person/Requests/Request"), 1):
        received = req.findtext("ReceivedDate")
        outcome_date = req.findtext("RequestOutcomeDate")
        if received and outcome_date and outcome_date < received:
            report.problems.append(f"Request {i}: RequestOutcomeDate is before ReceivedDate")
        if (req.findtext("RequestOutcome") is None) != (outcome_date is None):
            report.problems.append(f"Request {i}: RequestOutcome and RequestOutcomeDate go together")
        plan = req.find("Assessment/NamedPlan")
        if plan is not None:
            start = plan.findtext("StartDate")
            if received and start and start < received:
                report.problems.append(f"Request {i}: NamedPlan/StartDate is before ReceivedDate")
            if (plan.findtext("CeaseDate") is None) != (plan.findtext("CeaseReason") is None):
                report.problems.append(f"Request {i}: CeaseDate and CeaseReason go together")
            if req.findtext("Assessment/AssessmentOutcome") not in (None, "A", "H"):
                report.problems.append(f"Request {i}: a NamedPlan needs AssessmentOutcome A (decision to issue)")


def check(xml: bytes) -> Report:
    """Check a SEN2 return against the encoded field definitions (layout, order, formats, code sets)."""
    report, root = check_layout(xml, MESSAGE, SPECIFICATION)
    if root is not None:
        _cross_checks(root, report)
    return report
