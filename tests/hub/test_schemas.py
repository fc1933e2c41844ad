"""Schema catalogue: every schema loads, is released, and FULL_TRANSITIVE compatibility is enforced."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hub.core.errors import ConfigError, IncompatibleSchemaError
from hub.wire.schemas import SchemaCatalogue, compatibility_problems

ROOT = Path(__file__).resolve().parents[2]
EVENT_KINDS_FROM_THE_SEEDS = {
    "ReferralMade", "ReferralOutcome", "WaitingListEntered", "WaitEstimateUpdated", "AppointmentBooked",
    "AppointmentRescheduled", "AppointmentCancelled", "AttendanceRecorded", "AssessmentCompleted", "ReportIssued",
    "ReportAmended", "ResultAvailable", "DiagnosisRecorded", "HospitalAdmitted", "HospitalDischarged",
    "ServiceDischarged", "PlanPublished", "PlanReviewed", "TransitionRecorded", "KeyProfessionalChanged",
    "SocialCareOutcome", "EhcAssessmentRequested", "EhcAssessmentDecided", "EhcPlanIssued", "SchoolPlacement",
    "SchoolAttendance", "SchoolExclusion", "ConsentGranted", "ConsentWithdrawn", "IdentityLinked",
}


@pytest.fixture
def schema_copy(tmp_path: Path) -> Path:
    target = tmp_path / "schemas"
    shutil.copytree(ROOT / "schemas", target)
    return target


def test_every_event_kind_has_a_schema_and_a_released_version() -> None:
    cat = SchemaCatalogue(ROOT / "schemas")
    assert set(cat.current) >= EVENT_KINDS_FROM_THE_SEEDS
    assert cat.unreleased() == [], "run `hub schemas release` after changing a schema"
    for short in cat.current:
        assert cat.check(short) == [], short


def test_report_kinds_and_plan_kinds_cover_the_seed_reports() -> None:
    report = json.loads((ROOT / "schemas/uk.familyhub.ReportKind.avsc").read_text())
    assert {"paediatric", "speech_and_language_therapy", "occupational_therapy", "physiotherapy", "audiology",
            "portage", "psychology", "review"} <= set(report["symbols"])
    plan = json.loads((ROOT / "schemas/uk.familyhub.PlanKind.avsc").read_text())
    assert {"single_plan", "ehc_plan", "care_and_support_plan", "transition_plan"} <= set(plan["symbols"])


def test_adding_an_optional_field_is_compatible_and_releases_v2(schema_copy: Path) -> None:
    path = schema_copy / "uk.familyhub.event.ReportIssued.avsc"
    current = len(SchemaCatalogue(schema_copy).released["ReportIssued"])
    schema = json.loads(path.read_text())
    schema["fields"].append({"name": "pages", "type": ["null", "int"], "default": None})
    path.write_text(json.dumps(schema))
    cat = SchemaCatalogue(schema_copy)
    assert cat.unreleased() == ["ReportIssued"]
    assert cat.release() == [("ReportIssued", current + 1)]
    again = SchemaCatalogue(schema_copy)
    assert [v.version for v in again.released["ReportIssued"]] == list(range(1, current + 2))
    # a v1 fingerprint still resolves, so records written before the change stay readable
    assert again.by_fingerprint(again.released["ReportIssued"][0].fingerprint) is not None


def test_the_incompatible_fixture_is_caught(schema_copy: Path) -> None:
    # tests/fixtures/schemas holds a deliberately broken ReportIssued: a new required field with no
    # default and the disclosure_hold field's type changed from boolean to string.
    broken = ROOT / "tests/fixtures/schemas/uk.familyhub.event.ReportIssued.avsc"
    current = [v.version for v in SchemaCatalogue(schema_copy).released["ReportIssued"]]
    shutil.copy(broken, schema_copy / broken.name)
    cat = SchemaCatalogue(schema_copy)
    problems = cat.check("ReportIssued")
    assert any("backward" in p and "page_count" in p for p in problems), problems
    assert any("disclosure_hold" in p for p in problems), problems
    with pytest.raises(IncompatibleSchemaError, match="ReportIssued is not FULL_TRANSITIVE compatible"):
        cat.release()
    assert [v.version for v in SchemaCatalogue(schema_copy).released["ReportIssued"]] == current


def test_removing_an_enum_symbol_breaks_forward_reading() -> None:
    writer = {"type": "enum", "name": "E", "symbols": ["a", "b"]}
    reader = {"type": "enum", "name": "E", "symbols": ["a"]}
    assert compatibility_problems(reader, writer)
    assert compatibility_problems(reader | {"default": "a"}, writer) == []


def test_missing_schema_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        SchemaCatalogue(tmp_path / "nope")
