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
    assert result.problems[0].message == "event_type 'adoption_order' is not mapped by mapping la-generic@2"


def test_wrong_content_type():
    with pytest.raises(
        ValidationError, match="content type text/plain is not accepted; send application/json"
    ):
        social_care.parse_payload(b"x", "text/plain")


def referral(**fields: object) -> dict:
    row = {"event_type": "referral", "event_id": "NPT-REF-0900", "occurred_at": "2024-02-01T10:00:00",
           "person_id": "LA-100900", "la_code": "W06000022", "la_name": "Newport City Council"}
    row.update(fields)
    return row


def test_referral_sources_read_as_the_cin_census_defines_them():
    rows = [referral(event_id=f"R-{code}", referral_source=code) for code in ("1A", "1B", "1C", "1D", "5D")]
    result = social_care.parse_payload(json.dumps(rows), "application/json")
    assert [e.body["pathway"] for e in result.events] == [
        "CIN referral source 1A: Individual - family member, relative or carer",
        "CIN referral source 1B: Individual - acquaintance (including neighbours and child minders)",
        "CIN referral source 1C: Individual - self",
        "CIN referral source 1D: Individual - other (including strangers, MPs)",
        "CIN referral source 5D: LA services - early help",
    ]
    assert result.problems == []


def test_cin_census_item_names_are_accepted_as_sent_by_a_census_extract():
    rows = [referral(ReferralSource="2A"),
            dict(referral(event_type="child_in_need", event_id="CIN-1"), PrimaryNeedCode="N2"),
            dict(referral(event_type="case_closed", event_id="CL-1"), ReasonForClosure="RC8")]
    ref, cin, closed = social_care.parse_payload(json.dumps(rows), "application/json").events
    assert ref.body["pathway"] == "CIN referral source 2A: Schools"
    assert (cin.body["cin_code"], closed.body["cin_code"]) == ("N2", "RC8")
    for e in (ref, cin, closed):
        avro_validate(e)


def test_a_referral_source_outside_the_census_code_set_is_refused_and_the_good_rows_kept():
    rows = [referral(event_id="R-ok", referral_source="3B"), referral(event_id="R-bad", referral_source="11")]
    result = social_care.parse_payload(json.dumps(rows), "application/json")
    assert [e.source_id for e in result.events] == ["R-ok"]
    (problem,) = result.problems
    assert (problem.row, problem.location) == (1, "/referral_source")
    assert "does not know (expected one of 1A, 1B, 1C, 1D, 2A" in problem.message
    assert problem.message.endswith("5D, 6, 7, 8, 9, 10)")
    assert_no_identifiers(result.problems)
