from __future__ import annotations

import json

import pytest
from connector_helpers import FIXTURES, assert_no_identifiers, avro_validate

from connectors import social_care
from hub.core.errors import ValidationError


def test_csv_batch_emits_good_rows_and_reports_bad_lines(fixture_bytes):
    result = social_care.parse_payload(fixture_bytes("social_care/newport-events.csv"), "text/csv")
    kinds = [(e.record_type, e.body.get("outcome_kind")) for e in result.events]
    assert kinds == [
        ("ReferralMade", None),
        ("SocialCareOutcome", "referral_declined"),
        ("KeyProfessionalChanged", None),
        ("SocialCareOutcome", "child_in_need"),
        ("PlanPublished", None),
        ("SocialCareOutcome", "case_closed"),
    ]
    for event in result.events:
        avro_validate(event)
        assert event.sector == "social_care"
        assert event.occurred_at.tzinfo is not None
    referral, _, allocation, cin, plan, closed = result.events
    assert referral.body["pathway"] == "CIN referral source 3A: Health services - GP"
    assert referral.subject.system == "la-person-id"
    assert allocation.subject.system == "nhs-number"  # NHS number preferred when given
    assert allocation.body["current"] == {
        "id": "SW-0456",
        "role": "Social worker",
        "display_name": "Rhian Davies",
    }
    assert (cin.category, cin.body["cin_code"]) == ("child_protection", "N2")
    assert plan.body["plan_kind"] == "care_and_support_plan"
    assert closed.body["cin_code"] == "RC7"
    problems = {p.row: p for p in result.problems}
    assert set(problems) == {6, 7, 10, 11}  # header is line 1
    assert (problems[6].location, problems[6].message) == (
        "version",
        "source_version: expected a whole number",
    )
    assert problems[7].message == "nhs-number identifier fails the modulus-11 check"
    assert problems[10].message == "occurred_at is before 1900"
    assert "columns" in problems[11].message
    assert_no_identifiers(result.problems)


def test_single_json_event(fixture_bytes):
    result = social_care.parse_payload(fixture_bytes("social_care/cp-plan-started.json"), "application/json")
    (event,) = result.events
    assert event.record_type == "SocialCareOutcome"
    assert event.category == "child_protection"
    assert event.body["social_worker"]["display_name"] == "Owain Price"
    assert event.body["cin_code"] == "NEG"
    assert event.occurred_at.utcoffset().total_seconds() == 3600
    avro_validate(event)


def test_single_json_event_is_all_or_nothing_and_names_every_field():
    data = json.loads((FIXTURES / "social_care/cp-plan-started.json").read_text())
    data.update(
        event_type="case_closed",
        reason_for_closure="RC12",
        occurred_at="not a date",
        la_code=None,
        person_id="LA/100234",
    )
    with pytest.raises(ValidationError) as err:
        social_care.parse_payload(json.dumps(data), "application/json")
    where = {p.location for p in err.value.problems}
    assert where == {"/reason_for_closure", "/occurred_at", "/la_code", "/person_id"}
    assert_no_identifiers(err.value)


def test_unknown_event_type_and_json_array():
    body = json.dumps([{"event_type": "adoption_order", "event_id": "1"}, "nope"])
    result = social_care.parse_payload(body, "application/json")
    assert result.events == []
    assert [p.row for p in result.problems] == [0, 1]
    assert result.problems[0].message == "event_type 'adoption_order' is not mapped by mapping la-generic@1"


def test_wrong_content_type():
    with pytest.raises(
        ValidationError, match="content type text/plain is not accepted; send application/json"
    ):
        social_care.parse_payload(b"x", "text/plain")
