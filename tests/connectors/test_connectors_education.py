from __future__ import annotations

import json

import pytest
from connector_helpers import FIXTURES, assert_no_identifiers, avro_validate

from connectors import education
from hub.core.errors import ValidationError


def test_csv_send_events(fixture_bytes):
    result = education.parse_payload(fixture_bytes("education/send-events.csv"), "text/csv; charset=utf-8")
    kinds = [e.record_type for e in result.events]
    assert kinds == [
        "EhcAssessmentRequested",
        "EhcAssessmentDecided",
        "EhcPlanIssued",
        "SchoolPlacement",
        "SchoolAttendance",
        "TransitionRecorded",
    ]
    for event in result.events:
        avro_validate(event)
        assert (event.subject.system, event.category) == ("upn", "education")
    request, decision, plan, placement, attendance, _ = result.events
    assert request.body["requested_by"] == "family"
    assert decision.body["decision"] == "assess"
    assert plan.body["weeks_from_request"] == 19
    assert plan.body["plan_status"] == "issued"
    assert placement.body["school"]["agency_id"] == "110000"
    assert attendance.body["sessions_attended"] == 128
    problems = {p.row: p for p in result.problems}
    assert set(problems) == {7, 8}
    assert problems[7].message == "upn identifier fails the modulus-23 check-letter test"
    assert problems[8].message == "plan_start_date is before request_received_date"
    assert_no_identifiers(result.problems)


def test_ehc_plan_json_20_week_clock(fixture_bytes):
    (event,) = education.parse_payload(
        fixture_bytes("education/ehc-plan-issued.json"), "application/json"
    ).events
    assert event.body["weeks_from_request"] == 20
    assert event.source_version == 2
    avro_validate(event)


def test_ndjson_and_bad_values():
    good = json.loads((FIXTURES / "education/ehc-plan-issued.json").read_text())
    bad = dict(good, event_id="X", plan_start_date="14/06/2024", upn="H20112345670")
    excl = {
        "event_type": "exclusion",
        "event_id": "E1",
        "occurred_at": "2024-11-05T12:00:00Z",
        "upn": good["upn"],
        "school_urn": "100000",
        "school_name": "Example School",
        "exclusion_kind": "expelled",
        "start_date": "2024-11-06",
        "sessions": "four",
    }
    body = "\n".join(json.dumps(x) for x in (good, bad, excl))
    result = education.parse_payload(body, "application/x-ndjson")
    assert len(result.events) == 1
    by_row: dict[int, list[str]] = {}
    for p in result.problems:
        by_row.setdefault(p.row, []).append(f"{p.location} {p.message}")
    assert sorted(by_row) == [2, 3]
    assert any("/plan_start_date" in m and "expected a date" in m for m in by_row[2])
    assert any("/upn" in m and "wrong length" in m for m in by_row[2])
    assert any("/exclusion_kind" in m for m in by_row[3]) and any("/sessions" in m for m in by_row[3])
    assert_no_identifiers(result.problems)


def test_future_dates_refused():
    data = json.loads((FIXTURES / "education/ehc-plan-issued.json").read_text())
    data["plan_start_date"] = "2199-01-01"
    with pytest.raises(ValidationError, match="plan_start_date is more than 730 days in the future"):
        education.parse_payload(json.dumps(data), "application/json")


def sen2_row(event_type: str, event_id: str, **items: object) -> dict:
    good = json.loads((FIXTURES / "education/ehc-plan-issued.json").read_text())
    row = {k: good[k] for k in ("upn", "la_code", "la_name")}
    row.update(event_type=event_type, event_id=event_id, occurred_at="2025-03-01T10:00:00Z", **items)
    return row


def test_sen2_item_names_and_codes_reach_the_records():
    rows = [
        sen2_row("ehc_request", "R1", ReceivedDate="2024-09-02", RequestSource="2"),
        sen2_row("ehc_decision", "D1", request_id="R1", RequestOutcome="Y", RequestOutcomeDate="2024-10-14"),
        sen2_row("ehc_plan_issued", "P1", plan_id="EHC-1", request_id="R1", ReceivedDate="2024-09-02",
                 StartDate="2025-01-20", AssessmentOutcome="Y", Week20="1", SENtype="DS", SENsetting="EOTAS"),
        sen2_row("ehc_plan_ceased", "P1-C", plan_id="EHC-1", request_id="R1", StartDate="2025-01-20",
                 CeaseReason="5"),
    ]
    result = education.parse_payload(json.dumps(rows), "application/json")
    assert result.problems == []
    request, decision, plan, ceased = result.events
    assert request.body["request_source"] == "2"
    assert (decision.body["decision"], decision.body["request_outcome"]) == ("assess", "Y")
    assert str(decision.body["decision_date"]) == "2024-10-14"
    # SEN2 2025 guide v1.4 codes: DS (Down syndrome); EOTAS is the DfE's OLA (section 61 arrangements)
    assert (plan.body["sen_type"], plan.body["sen_setting"]) == ("DS", "OLA")
    # Week20 is the DfE's "20-week time limit exceptions apply", not "issued within 20 weeks"
    assert (plan.body["week20_exceptions_apply"], plan.body["issued_within_20_weeks"]) == (True, None)
    assert plan.mapping == "mis-generic@3"
    assert plan.body["weeks_from_request"] == 20  # 2 September to 20 January
    assert ceased.body["cease_reason"] == "5"
    for e in result.events:
        avro_validate(e)


def test_a_request_outcome_of_a_yet_to_be_made_decision_is_not_an_assessment():
    rows = [sen2_row("ehc_decision", f"D-{code}", request_id="R1", RequestOutcome=code, RequestOutcomeDate="2024-10-14")
            for code in ("Y", "N", "A", "W", "H")]
    result = education.parse_payload(json.dumps(rows), "application/json")
    assert result.problems == []
    assert [(e.body["request_outcome"], e.body["decision"]) for e in result.events] == [
        ("Y", "assess"), ("N", "not_assess"), ("A", "other"), ("W", "other"), ("H", "other")]
    refused = education.parse_payload(json.dumps([sen2_row("ehc_decision", "D-B", request_id="R1",
                                                           RequestOutcome="B")]), "application/json")
    assert refused.events == [] and refused.problems  # B is no DfE RequestOutcome code


def test_records_without_the_sen2_items_still_map_as_before(fixture_bytes):
    (event,) = education.parse_payload(fixture_bytes("education/ehc-plan-issued.json"), "application/json").events
    assert {event.body.get(k) for k in ("sen_type", "cease_reason", "issued_within_20_weeks")} == {None}


def test_a_sen2_code_outside_its_code_set_is_refused_with_the_codes_and_nothing_else_lost():
    rows = [sen2_row("ehc_request", "R1", ReceivedDate="2024-09-02", RequestSource="9"),
            sen2_row("ehc_request", "R2", ReceivedDate="2024-09-03", RequestSource="1")]
    result = education.parse_payload(json.dumps(rows), "application/json")
    assert [e.source_id for e in result.events] == ["R2"]
    (problem,) = result.problems
    assert problem.location == "/RequestSource"
    assert problem.message.endswith("(expected one of 1, 2, 3, 4, 5)")
    assert_no_identifiers(result.problems)
