"""The record-type catalogue: every event schema declares its facts, and they are the ones the code used to list."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hub.core import records
from hub.core.errors import ConfigError, UnknownRecordTypeError
from hub.core.records import RecordCatalogue, event_schema_files
from hub.core.templates import Template
from hub.kafka.topics import (
    INGEST_CONSENT,
    INGEST_EDUCATION,
    INGEST_HEALTH,
    INGEST_IDENTITY,
    INGEST_SOCIAL_CARE,
    topic_for,
)
from hub.sharing.model import Shareable, information_summary, shareable_from
from hub.sharing.processor import Change, relevant
from hub.stream.timeline import summarise

ROOT = Path(__file__).resolve().parents[2]
CAT = RecordCatalogue(ROOT / "schemas")

# --- what the code listed by hand before the facts moved into the schemas ----------------------------------------

TEAM_JOINS = frozenset({
    "ReferralMade", "WaitingListEntered", "AppointmentBooked", "AttendanceRecorded", "AssessmentCompleted",
    "ReportIssued", "PlanPublished", "PlanReviewed", "KeyProfessionalChanged", "SchoolPlacement",
    "EhcAssessmentRequested", "EhcPlanIssued", "HospitalAdmitted", "SocialCareOutcome", "ReferralOutcome"})
SHAREABLE = {
    "ReportIssued": "report", "ReportAmended": "report", "AssessmentCompleted": "assessment",
    "ResultAvailable": "result", "PlanPublished": "plan", "PlanReviewed": "plan", "EhcPlanIssued": "plan",
    "ReferralOutcome": "referral_outcome",
}
REPORT_TYPES = ("ReportIssued", "ReportAmended")
CONSENT_TYPES = ("ConsentGranted", "ConsentWithdrawn")
TEAM_CHANGES = frozenset({"ReferralMade", "AppointmentBooked", "AttendanceRecorded", "KeyProfessionalChanged",
                          "SchoolPlacement", "EhcAssessmentRequested", "HospitalAdmitted", "WaitingListEntered",
                          "SocialCareOutcome"})
RELEVANT = frozenset(SHAREABLE) | frozenset(CONSENT_TYPES) | TEAM_CHANGES
SHARE_FIELDS = ("report_id", "report_kind", "title", "document_ref", "assessment_kind", "test_kind", "plan_id",
                "plan_kind", "plan_status", "outcome", "review_due", "plan_start_date")


def old_topic_for(record_type: str, sector: str) -> str:
    if record_type == "IdentityLinked":
        return INGEST_IDENTITY.name
    if record_type.startswith("Consent"):
        return INGEST_CONSENT.name
    by_sector = {"health": INGEST_HEALTH, "social_care": INGEST_SOCIAL_CARE, "education": INGEST_EDUCATION}
    return by_sector.get(sector, INGEST_HEALTH if sector == "hub" else INGEST_SOCIAL_CARE).name


SVC = {"agency_id": "abuhb", "service_name": "Community Paediatrics", "sector": "health"}
AT = datetime(2026, 9, 8, 14, 30)
#: (record type, record, summary, label) — the summary and (for shareable types) the label the old code gave
SUMMARIES: list[tuple[str, dict[str, Any], str, str | None]] = [
    ("ReferralMade", {"service": SVC, "pathway": "neurodevelopmental"},
     'Referral to Community Paediatrics (neurodevelopmental)', None),
    ("ReferralMade", {"service": SVC, "pathway": None},
     'Referral to Community Paediatrics', None),
    ("ReferralOutcome", {"service": SVC, "outcome": "accepted", "reason": None},
     'Referral accepted by Community Paediatrics', 'accepted'),
    ("ReferralOutcome", {"service": SVC, "outcome": "declined", "reason": "not_eligible"},
     'Referral declined by Community Paediatrics: not_eligible', 'declined'),
    ("WaitingListEntered", {"service": SVC, "estimated_wait_days": 126},
     'On Community Paediatrics waiting list, about 18 weeks', None),
    ("WaitingListEntered", {"service": SVC, "estimated_wait_days": 0},
     'On Community Paediatrics waiting list', None),
    ("WaitingListEntered", {"service": SVC, "estimated_wait_days": None},
     'On Community Paediatrics waiting list', None),
    ("WaitEstimateUpdated", {"service": SVC, "estimated_wait_days": 30},
     'Community Paediatrics wait now about 4 weeks', None),
    ("AppointmentBooked", {"service": SVC, "contact_type": "face_to_face", "start": AT},
     'Face to face appointment with Community Paediatrics on 08 Sep 2026 14:30', None),
    ("AppointmentRescheduled", {"service": SVC, "new_start": AT, "rescheduled_by": "service"},
     'Community Paediatrics appointment moved to 08 Sep 2026 14:30 by service', None),
    ("AppointmentCancelled", {"service": SVC, "cancelled_by": "family_member"},
     'Community Paediatrics appointment cancelled by family member', None),
    ("AttendanceRecorded", {"service": SVC, "outcome": "did_not_attend"},
     'Community Paediatrics: did not attend', None),
    ("AssessmentCompleted", {"service": SVC, "assessment_kind": "ADOS-2"},
     'ADOS-2 completed by Community Paediatrics', 'ADOS-2'),
    ("ReportIssued", {"service": SVC, "report_kind": "speech_and_language_therapy", "title": "SLT report"},
     'Speech and language therapy report issued by Community Paediatrics: SLT report', 'SLT report'),
    ("ReportAmended", {"service": SVC, "report_kind": "paediatric", "title": "Clinic letter"},
     'Paediatric report amended by Community Paediatrics: Clinic letter', 'Clinic letter'),
    ("ResultAvailable", {"service": SVC, "test_kind": "Hearing test"},
     'Hearing test result available from Community Paediatrics', 'Hearing test'),
    ("DiagnosisRecorded", {"service": SVC, "display": "Autism"},
     'Diagnosis recorded by Community Paediatrics: Autism', None),
    ("HospitalAdmitted", {"service": SVC, "emergency": True},
     'Emergency admission to Community Paediatrics', None),
    ("HospitalAdmitted", {"service": SVC, "emergency": False},
     'Admitted to Community Paediatrics', None),
    ("HospitalDischarged", {"service": SVC},
     'Discharged from Community Paediatrics', None),
    ("ServiceDischarged", {"service": SVC, "open_access": True},
     'Discharged from Community Paediatrics (open access)', None),
    ("ServiceDischarged", {"service": SVC, "open_access": False},
     'Discharged from Community Paediatrics', None),
    ("PlanPublished", {"service": SVC, "plan_kind": "care_and_support_plan", "title": "My plan"},
     'Care and support plan published by Community Paediatrics', 'My plan'),
    ("PlanReviewed", {"service": SVC, "plan_kind": "ehc_plan", "outcome": "continue"},
     'Ehc plan reviewed by Community Paediatrics', 'ehc plan'),
    ("TransitionRecorded", {"transition_kind": "school_to_college", "to_setting": "Coleg Gwent"},
     'Transition: school to college to Coleg Gwent', None),
    ("TransitionRecorded", {"transition_kind": "child_to_adult_services", "to_setting": None},
     'Transition: child to adult services', None),
    ("StatutoryClockException", {"service": SVC, "clock": "ehc_final_plan",
                                 "exception": "reg. 13(3)(b): the child was absent from the area"},
     'Statutory time limit paused: reg. 13(3)(b): the child was absent from the area', None),
    ("KeyProfessionalChanged",
     {"service": SVC, "role": "social worker", "current": {"id": "p1", "display_name": "Sam"}},
     'New social worker at Community Paediatrics: Sam', None),
    ("KeyProfessionalChanged", {"service": SVC, "role": "lead", "current": {"id": "p2", "display_name": None}},
     'New lead at Community Paediatrics: p2', None),
    ("SocialCareOutcome", {"service": SVC, "outcome_kind": "child_in_need_plan"},
     'Social care: child in need plan (Community Paediatrics)', None),
    ("EhcAssessmentRequested", {"service": SVC},
     'EHC needs assessment requested from Community Paediatrics', None),
    ("EhcAssessmentDecided", {"service": SVC, "decision": "agreed_to_assess"},
     'EHC needs assessment decision: agreed to assess', None),
    ("EhcPlanIssued", {"service": SVC, "plan_status": "final", "weeks_from_request": 19},
     'EHC plan final (19 weeks from request)', 'EHC plan (final)'),
    ("EhcPlanIssued", {"service": SVC, "plan_status": "draft", "weeks_from_request": 0},
     'EHC plan draft (0 weeks from request)', 'EHC plan (draft)'),
    ("EhcPlanIssued", {"service": SVC, "plan_status": "final", "weeks_from_request": None},
     'EHC plan final', 'EHC plan (final)'),
    ("SchoolPlacement", {"school": {**SVC, "service_name": "Bassaleg School"}},
     'School placement at Bassaleg School', None),
    ("SchoolAttendance", {"school": SVC, "sessions_attended": 171, "sessions_possible": 190},
     'Attendance at Community Paediatrics: 90% of sessions', None),
    ("SchoolAttendance", {"school": SVC, "sessions_attended": 0, "sessions_possible": 0},
     'Attendance at Community Paediatrics: 0% of sessions', None),
    ("SchoolExclusion", {"school": SVC, "exclusion_kind": "fixed_term"},
     'Fixed term from Community Paediatrics', None),
    ("ConsentGranted", {},
     'Consent directive given', None),
    ("ConsentWithdrawn", {},
     'Consent directive withdrawn', None),
    ("IdentityLinked", {},
     'IdentityLinked', None),
    ("PlanPublished", {"service": SVC, "plan_kind": "transition_plan", "title": ""},
     'Transition plan published by Community Paediatrics', 'transition plan'),
    ("PlanReviewed", {"service": SVC, "plan_kind": "ehc_plan", "outcome": "ceased"},
     'Ehc plan reviewed by Community Paediatrics', 'ehc plan'),
    ("ReportIssued", {"service": SVC, "report_kind": "review", "title": ""},
     'Review report issued by Community Paediatrics: ', 'ReportIssued'),
]


# --- every schema declares its facts ---------------------------------------------------------------------------

def test_every_event_schema_declares_its_topic() -> None:
    files = event_schema_files(ROOT / "schemas")
    assert len(files) == len(CAT.types) >= 30
    for path in files:
        schema = json.loads(path.read_text())
        assert schema.get("hub.topic") in records.TOPICS, path.name


def test_the_configured_catalogue_is_the_checkout_schemas() -> None:
    assert records.catalogue().dir.resolve() == (ROOT / "schemas").resolve()
    assert set(records.catalogue().types) == set(CAT.types)


def test_unknown_record_type_is_refused() -> None:
    with pytest.raises(UnknownRecordTypeError, match="NoSuchRecord"):
        CAT.get("NoSuchRecord")
    with pytest.raises(UnknownRecordTypeError):
        records.get("NoSuchRecord")
    with pytest.raises(UnknownRecordTypeError):
        topic_for("NoSuchRecord", "health")
    assert "NoSuchRecord" not in CAT


# --- the facts are the ones the code used to list -------------------------------------------------------------

def test_team_joins_shareable_reports_and_consent_are_as_listed_before() -> None:
    assert CAT.team_joins == TEAM_JOINS
    assert dict(CAT.shareable) == SHAREABLE
    assert CAT.report_types == frozenset(REPORT_TYPES)
    assert CAT.consent_types == frozenset(CONSENT_TYPES)


def test_sharing_considers_the_same_record_types_as_before() -> None:
    for name in CAT.types:
        change = Change(1, "h1", "c1", "e1", "added", name, "active")
        assert relevant(change) == (name in RELEVANT), name


def test_share_fields_are_the_old_list_within_each_schema() -> None:
    for t in CAT:
        if t.shareable is None:
            assert t.share_fields == (), t.name
            continue
        fields = [f["name"] for f in json.loads(t.path.read_text())["fields"]]
        assert t.share_fields == tuple(k for k in SHARE_FIELDS if k in fields), t.name


@pytest.mark.parametrize("sector", ["health", "social_care", "education", "family", "hub"])
def test_topic_for_routes_as_before(sector: str) -> None:
    for name in CAT.types:
        assert topic_for(name, sector).name == old_topic_for(name, sector), (name, sector)  # type: ignore[arg-type]


@pytest.mark.parametrize(("record_type", "record", "summary", "label"), SUMMARIES,
                         ids=[f"{t}-{i}" for i, (t, *_) in enumerate(SUMMARIES)])
def test_summaries_and_labels_read_as_before(record_type: str, record: dict[str, Any], summary: str,
                                             label: str | None) -> None:
    assert summarise(record_type, record) == summary
    if label is not None:  # the title readiness gives a share: the schema's label, else the record type
        template = CAT.get(record_type).label
        assert template is not None
        assert (template.render(record) or record_type) == label


def test_every_record_type_but_identity_links_has_a_summary() -> None:
    assert {t.name for t in CAT if t.summary is None} == {"IdentityLinked"}
    assert {t.name for t in CAT if t.label is not None} == set(SHAREABLE)
    assert {t for t, *_ in SUMMARIES} == set(CAT.types)


def test_information_summary_carries_the_share_fields() -> None:
    meta = {"event_id": "e1", "occurred_at": AT.replace(tzinfo=UTC), "source_version": 2, "category": "general"}
    record = {"meta": meta,
              "service": SVC, "report_id": "r1", "report_kind": "paediatric", "title": "Clinic letter",
              "document_ref": None, "disclosure_hold": False}
    s = shareable_from({"record_type": "ReportIssued", "record": record}, "child-1")
    assert isinstance(s, Shareable)
    info = information_summary(s)
    assert (info["kind"], info["report_id"], info["report_kind"], info["title"]) == (
        "report", "r1", "paediatric", "Clinic letter")
    assert "document_ref" not in info and "disclosure_hold" not in info


# --- the catalogue refuses malformed facts ----------------------------------------------------------------------

def _copy_with(tmp_path: Path, record_type: str, **attrs: Any) -> Path:
    target = tmp_path / "schemas"
    shutil.copytree(ROOT / "schemas", target, ignore=shutil.ignore_patterns("released"))
    path = target / f"{records.EVENT_NAMESPACE}.{record_type}.avsc"
    schema = json.loads(path.read_text())
    for key, value in attrs.items():
        name = "hub." + key
        if value is None:
            schema.pop(name, None)
        else:
            schema[name] = value
    path.write_text(json.dumps(schema))
    return target


@pytest.mark.parametrize("attrs", [
    {"topic": None}, {"topic": "somewhere"}, {"team_join": "yes"}, {"shareable": 3},
    {"summary": "Report {title:shout}"}, {"summary": [{"if": "title"}]}, {"summary": "Report {title"},
    {"share_fields": ["no_such_field"]},
])
def test_malformed_facts_are_refused(tmp_path: Path, attrs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="ReportIssued"):
        RecordCatalogue(_copy_with(tmp_path, "ReportIssued", **attrs))


def test_a_missing_schema_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="HUB_SCHEMA_DIR"):
        RecordCatalogue(tmp_path / "none")


def test_templates() -> None:
    record = {"a": "x_y", "n": 0, "inner": {"name": None, "id": "i1"}, "days": 15, "part": 1, "whole": 3}
    assert Template.parse("{a:Human} {a:human} {a}").render(record) == "X y x y x_y"
    assert Template.parse("{inner.name|inner.id} {days:weeks} {part:percent_of=whole}%").render(record) == "i1 2 33%"
    assert Template.parse([{"if": "n", "then": "yes", "else": "no"}, {"if_set": "n", "then": " set"}]).render(
        record) == "no set"
    assert Template.parse("{missing}|{inner.name}").render(record) == "|"
