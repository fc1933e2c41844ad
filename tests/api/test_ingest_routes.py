"""Agency payloads over HTTP against the real embedded broker, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from api_helpers import assert_no_identifiers, assert_not_in_bytes, fixture, records_on

from hub.ingest.services import Services
from tests.api.conftest import token_header

pytestmark = pytest.mark.broker
CSV, JSON, FHIR_JSON, FHIR_XML = (
    "text/csv",
    "application/json",
    "application/fhir+json",
    "application/fhir+xml",
)
PROBLEM = "application/problem+json"


def post(client: httpx.AsyncClient, route: str, body: bytes | str, content_type: str, **headers: str) -> Any:
    return client.post(route, content=body, headers={"Content-Type": content_type, **headers})


def ok_ids(answer: dict[str, Any]) -> list[str]:
    return [r["event_id"] for r in answer["results"] if r["status"] == "accepted"]


# --- social care --------------------------------------------------------------------------------


async def test_social_care_csv_keeps_good_rows_names_bad_lines_and_resend_is_duplicates(
    client: httpx.AsyncClient, services: Services
) -> None:
    body = fixture("social_care/newport-events.csv")
    r = await post(client, "/v1/ingest/social-care", body, CSV, **{"Idempotency-Key": "batch-1"})
    assert r.status_code == 207, r.text
    answer = r.json()
    assert (answer["accepted"], answer["duplicates"], answer["rejected"]) == (6, 0, 4)
    assert [x["row"] for x in answer["results"]] == [2, 3, 4, 5, 8, 9]
    problems = {p["row"]: p for p in answer["problems"]}
    assert set(problems) == {6, 7, 10, 11}  # CSV line numbers; the header is line 1
    assert problems[6]["location"] == "version" and "whole number" in problems[6]["detail"]
    assert problems[7]["location"] == "nhs_number" and "modulus-11" in problems[7]["detail"]
    assert "before 1900" in problems[10]["detail"]  # out-of-range date
    assert "columns" in problems[11]["detail"]
    assert_no_identifiers(r.text)

    records = await records_on(services, "hub.ingest.social-care")
    assert sorted(x["meta"]["event_id"] for x in records) == sorted(ok_ids(answer))
    assert {x["_type"] for x in records} == {
        "ReferralMade",
        "SocialCareOutcome",
        "KeyProfessionalChanged",
        "PlanPublished",
    }
    subject = services.pseudonymise("la-person-id", "LA-100234")
    assert subject in {x["_key"] for x in records}
    assert all(x["_key"] == x["meta"]["subject"] for x in records)
    for x in records:
        assert_not_in_bytes(x["_raw"])

    again = await post(client, "/v1/ingest/social-care", body, CSV)
    assert again.status_code == 207
    resent = again.json()
    assert (resent["accepted"], resent["duplicates"], resent["rejected"]) == (0, 6, 4)
    assert [x["event_id"] for x in resent["results"]] == ok_ids(answer)
    assert len(await records_on(services, "hub.ingest.social-care")) == 6
    assert services.store.log_count() == 6


async def test_social_care_single_json_event(client: httpx.AsyncClient, services: Services) -> None:
    r = await post(client, "/v1/ingest/social-care", fixture("social_care/cp-plan-started.json"), JSON)
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["row"] is None and r.json()["accepted"] == 1
    [record] = await records_on(services, "hub.ingest.social-care")
    assert record["_type"] == "SocialCareOutcome" and record["cin_code"] == "NEG"
    assert record["meta"]["category"] == "child_protection"


async def test_single_json_event_refused_names_every_field(
    client: httpx.AsyncClient, services: Services
) -> None:
    data = json.loads(fixture("social_care/cp-plan-started.json"))
    data.update(
        event_type="case_closed",
        reason_for_closure="RC12",
        occurred_at="not a date",
        la_code=None,
        person_id="LA/100234",
    )
    r = await post(client, "/v1/ingest/social-care", json.dumps(data), JSON)
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    doc = r.json()
    assert doc["status"] == 422 and doc["accepted"] == 0
    assert {e["pointer"] for e in doc["errors"]} == {
        "/reason_for_closure",
        "/occurred_at",
        "/la_code",
        "/person_id",
    }
    assert_no_identifiers(r.text)
    assert await records_on(services, "hub.ingest.social-care") == []


async def test_json_array_wrong_types_and_out_of_range_dates(
    client: httpx.AsyncClient, services: Services
) -> None:
    good = json.loads(fixture("social_care/cp-plan-started.json"))
    batch = [
        good,
        {**good, "event_id": "NPT-CP-0102", "version": "two"},  # wrong type
        {**good, "event_id": "NPT-CP-0103", "occurred_at": "2999-01-01T10:00:00Z"},  # far future
        {**good, "event_id": "NPT-CP-0104", "occurred_at": "1850-01-01T10:00:00Z"},  # before 1900
        "not an object",
    ]
    r = await post(client, "/v1/ingest/social-care", json.dumps(batch), JSON)
    assert r.status_code == 207, r.text
    answer = r.json()
    assert answer["accepted"] == 1 and answer["rejected"] == 4
    by_row = {p["row"]: p for p in answer["problems"]}
    assert set(by_row) == {1, 2, 3, 4}  # JSON array indexes
    assert by_row[1]["location"] == "/version"
    assert by_row[2]["location"] == "/occurred_at" and "future" in by_row[2]["detail"]
    assert by_row[3]["location"] == "/occurred_at" and "1900" in by_row[3]["detail"]
    assert "object" in by_row[4]["detail"]
    [record] = await records_on(services, "hub.ingest.social-care")
    assert record["meta"]["source_id"] == "NPT-CP-0101"


# --- education ----------------------------------------------------------------------------------


async def test_education_csv_and_json(client: httpx.AsyncClient, services: Services) -> None:
    r = await post(
        client, "/v1/ingest/education", fixture("education/send-events.csv"), "text/csv; charset=utf-8"
    )
    assert r.status_code == 207, r.text
    answer = r.json()
    assert (answer["accepted"], answer["rejected"]) == (6, 2)
    by_row = {p["row"]: p for p in answer["problems"]}
    assert by_row[7]["location"] == "upn" and "modulus-23" in by_row[7]["detail"]  # invalid UPN, not shown
    assert by_row[8]["location"] == "plan_start_date"
    assert_no_identifiers(r.text)
    single = await post(client, "/v1/ingest/education", fixture("education/ehc-plan-issued.json"), JSON)
    assert single.status_code == 200 and single.json()["accepted"] == 1
    records = await records_on(services, "hub.ingest.education")
    assert len(records) == 7
    assert {x["_type"] for x in records} >= {"EhcAssessmentRequested", "EhcPlanIssued", "SchoolAttendance"}
    upn_subject = services.pseudonymise("upn", "C873123456700")
    assert sum(1 for x in records if x["_key"] == upn_subject) == 6
    for x in records:
        assert_not_in_bytes(x["_raw"])


async def test_education_invalid_upn_only_batch_is_422(client: httpx.AsyncClient) -> None:
    data = json.loads(fixture("education/ehc-plan-issued.json"))
    batch = [{**data, "upn": "H20112345670"}, {**data, "event_id": "X-2", "upn": "H201123456709"}]
    r = await post(client, "/v1/ingest/education", json.dumps(batch), JSON)
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    doc = r.json()
    assert [e["row"] for e in doc["errors"]] == [0, 1]
    assert all(e["pointer"] == "/upn" for e in doc["errors"])
    assert_no_identifiers(r.text)


# --- health (/v1/ingest/health) -------------------------------------------------------------------


async def test_health_bundle_json_then_xml_is_the_same_events(
    client: httpx.AsyncClient, services: Services
) -> None:
    r = await post(client, "/v1/ingest/health", fixture("health/bundle-collection-cerys.json"), FHIR_JSON)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["accepted"] == 6 and answer["rejected"] == 0 and answer["ignored"] >= 3
    records = await records_on(services, "hub.ingest.health") + await records_on(
        services, "hub.ingest.consent"
    )
    assert {x["_type"] for x in records} == {
        "AppointmentBooked",
        "AttendanceRecorded",
        "ReferralMade",
        "ReportIssued",
        "DiagnosisRecorded",
        "ConsentGranted",
    }
    subject = services.pseudonymise("nhs-number", "9990000018")
    assert {x["_key"] for x in records} == {subject}
    for x in records:
        assert_not_in_bytes(x["_raw"])
    xml = await post(client, "/v1/ingest/health", fixture("health/bundle-collection-cerys.xml"), FHIR_XML)
    assert xml.status_code == 200
    assert xml.json()["duplicates"] == 6 and xml.json()["accepted"] == 0
    assert [x["event_id"] for x in xml.json()["results"]] == [x["event_id"] for x in answer["results"]]


async def test_health_ndjson_reports_lines(client: httpx.AsyncClient, services: Services) -> None:
    r = await post(client, "/v1/ingest/health", fixture("health/resources.ndjson"), "application/x-ndjson")
    assert r.status_code == 207, r.text
    answer = r.json()
    assert answer["accepted"] == 5
    by_row = {p["row"]: p for p in answer["problems"]}
    assert set(by_row) == {3, 4}
    assert "malformed JSON" in by_row[3]["detail"]
    assert "'Observation' is not mapped" in by_row[4]["detail"]
    records = await records_on(services, "hub.ingest.health")  # a FHIR Flag's SocialCareOutcome too
    assert sorted(x["_type"] for x in records) == sorted(
        ["WaitingListEntered", "ResultAvailable", "PlanPublished", "SocialCareOutcome", "ReferralOutcome"]
    )


async def test_health_transaction_is_all_or_nothing(client: httpx.AsyncClient, services: Services) -> None:
    bundle = json.loads(fixture("health/bundle-transaction-admission.json"))
    bundle["entry"][0]["resource"]["identifier"][0]["value"] = "9990000019"  # fails modulus 11
    r = await post(client, "/v1/ingest/health", json.dumps(bundle), FHIR_JSON)
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    doc = r.json()
    assert "Bundle.entry[0].resource.identifier[0].value" in [e["pointer"] for e in doc["errors"]]
    assert doc["accepted"] == 0 and doc["rejected"] >= 3
    assert_no_identifiers(r.text)
    assert await records_on(services, "hub.ingest.health") == []
    good = await post(
        client, "/v1/ingest/health", fixture("health/bundle-transaction-admission.json"), FHIR_JSON
    )
    assert good.status_code == 200 and good.json()["accepted"] == 3


@pytest.mark.parametrize(
    ("route", "body", "content_type", "status", "needle"),
    [
        (
            "/v1/ingest/health",
            b'{"resourceType": "Appointment", ',
            FHIR_JSON,
            400,
            "malformed JSON at line 1",
        ),
        (
            "/v1/ingest/health",
            b"<Appointment xmlns='http://hl7.org/fhir'><status",
            FHIR_XML,
            400,
            "malformed XML",
        ),
        (
            "/v1/ingest/health",
            b'{"resourceType": "Wibble"}',
            FHIR_JSON,
            422,
            "resourceType is not a FHIR R4 resource type",
        ),
        ("/v1/ingest/social-care", b"[{]", JSON, 400, "malformed JSON"),
        ("/v1/ingest/social-care", b"", CSV, 400, "CSV payload is empty"),
        ("/v1/ingest/education", b'"just a string"', JSON, 400, "object or an array"),
        ("/v1/ingest/education", b"\xff\xfe", CSV, 400, "not UTF-8"),
    ],
)
async def test_unreadable_payloads(
    client: httpx.AsyncClient, route: str, body: bytes, content_type: str, status: int, needle: str
) -> None:
    r = await post(client, route, body, content_type)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    assert needle in r.text


async def test_wrong_field_type_in_fhir_resource_names_the_path(client: httpx.AsyncClient) -> None:
    data = json.loads(fixture("health/appointment-booked.json"))
    data["participant"] = "nobody"
    data["start"] = "2024-13-45T10:00:00Z"
    r = await post(client, "/v1/ingest/health", json.dumps(data), FHIR_JSON)
    assert r.status_code == 422
    pointers = " ".join(e["pointer"] for e in r.json()["errors"])
    assert "Appointment.participant" in pointers and "Appointment.start" in pointers


@pytest.mark.parametrize(
    ("route", "content_type", "accepted"),
    [
        ("/v1/ingest/social-care", "application/xml", "text/csv"),
        ("/v1/ingest/education", "", "application/json"),
        ("/v1/ingest/health", "text/csv", "application/fhir+json"),
    ],
)
async def test_wrong_content_type_is_415(
    client: httpx.AsyncClient, route: str, content_type: str, accepted: str
) -> None:
    r = await post(client, route, b"{}", content_type)
    assert r.status_code == 415 and r.headers["content-type"] == PROBLEM
    assert accepted in r.json()["detail"]


async def test_oversized_bodies_are_413_with_and_without_content_length(
    small_client: httpx.AsyncClient,
) -> None:
    big = b"event_type,event_id\n" + b"referral,X\n" * 400
    r = await post(small_client, "/v1/ingest/social-care", big, CSV)
    assert r.status_code == 413 and r.headers["content-type"] == PROBLEM

    async def stream() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b"referral,X\n" * 10

    r = await small_client.post("/v1/ingest/social-care", content=stream(), headers={"Content-Type": CSV})
    assert r.status_code == 413 and "2048 bytes" in r.json()["detail"]
    r = await small_client.post("/fhir", content=stream(), headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 413 and r.json()["issue"][0]["code"] == "too-costly"


async def test_broker_down_is_503_with_retry_after_and_retry_is_safe(
    client: httpx.AsyncClient, services: Services
) -> None:
    body = fixture("social_care/cp-plan-started.json")
    await services.publisher.stop()
    r = await post(client, "/v1/ingest/social-care", body, JSON)
    assert r.status_code == 503 and r.headers["Retry-After"] and r.headers["content-type"] == PROBLEM
    f = await post(client, "/fhir/Appointment", fixture("health/appointment-booked.json"), FHIR_JSON)
    assert f.status_code == 503 and f.json()["issue"][0]["code"] == "transient" and f.headers["Retry-After"]
    await services.publisher.start()
    again = await post(client, "/v1/ingest/social-care", body, JSON)
    assert again.status_code == 200
    # the first attempt was logged but never acknowledged: the retry publishes it once
    assert len(await records_on(services, "hub.ingest.social-care")) == 1
    assert services.store.log_count(unpublished_only=True) == 1  # the FHIR attempt: left for the relay


async def test_metrics_count_accepted_duplicates_and_rejected(client: httpx.AsyncClient, services: Services) -> None:
    body = fixture("education/send-events.csv")
    await post(client, "/v1/ingest/education", body, CSV)
    await post(client, "/v1/ingest/education", body, CSV)
    await post(client, "/v1/ingest/education", body, "text/plain")
    assert (await client.get("/metrics")).status_code == 403  # an agency token does not open the metrics
    text = (await client.get("/metrics", headers=token_header(services, "monitor", "prometheus"))).text
    assert 'hub_ingest_accepted_total{topic="hub.ingest.education"} 6.0' in text
    assert "hub_ingest_duplicates_total 6.0" in text
    assert "hub_ingest_rejected_total 5.0" in text  # 2 rows twice and one refused request
    # the hub-wide gauges (lag, backlog) come from the background sampler (tests/api/test_metrics.py)
    assert 'hub_ingest_duration_seconds_count{route="/v1/ingest/education",status="2xx"} 2.0' in text


# --- FHIR routes ----------------------------------------------------------------------------------


async def test_fhir_create_single_resource(client: httpx.AsyncClient, services: Services) -> None:
    body = fixture("health/appointment-booked.json")
    r = await post(client, "/fhir/Appointment", body, FHIR_JSON)
    assert r.status_code == 201, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    location = r.headers["Location"]
    assert location.startswith("http://hub.test/fhir/Appointment/") and r.json()["resourceType"] == "OperationOutcome"
    again = await post(client, "/fhir/Appointment", fixture("health/appointment-booked.xml"), FHIR_XML)
    assert again.status_code == 200 and again.headers["Location"] == location
    [record] = await records_on(services, "hub.ingest.health")
    meta = record["meta"]
    assert record["_type"] == "AppointmentBooked"
    assert location == f"http://hub.test/fhir/Appointment/{meta['event_id']}/_history/{meta['source_version']}"


async def test_fhir_refusals_are_operation_outcomes(client: httpx.AsyncClient, services: Services) -> None:
    appointment = fixture("health/appointment-booked.json")
    r = await post(client, "/fhir/Patient", appointment, FHIR_JSON)
    assert r.status_code == 400
    [issue] = r.json()["issue"]
    assert (
        issue["severity"] == "error"
        and issue["code"] == "invalid"
        and issue["expression"] == ["resourceType"]
    )
    assert "'Appointment'" in issue["diagnostics"]
    r = await post(client, "/fhir/Wibble", b'{"resourceType": "Wibble"}', FHIR_JSON)
    assert r.status_code == 404 and r.json()["issue"][0]["code"] == "not-supported"
    r = await post(
        client,
        "/fhir/Observation",
        json.dumps({"resourceType": "Observation", "status": "final", "code": {"text": "Weight"}}),
        FHIR_JSON,
    )
    assert r.status_code == 422 and "not-supported" in [i["code"] for i in r.json()["issue"]]
    r = await post(client, "/fhir/Appointment", b"<Appointment", FHIR_XML)
    assert r.status_code == 400 and r.json()["issue"][0]["code"] == "structure"
    r = await post(client, "/fhir/Appointment", appointment, "text/csv")
    assert r.status_code == 415 and r.json()["issue"][0]["code"] == "not-supported"
    data = json.loads(appointment)
    data["participant"][0]["actor"]["identifier"]["value"] = "9990000027"
    r = await post(client, "/fhir/Appointment", json.dumps(data), FHIR_JSON)
    assert r.status_code == 422
    [issue] = r.json()["issue"]
    assert issue["expression"] == ["Appointment.participant.actor.identifier.value"]
    assert "modulus-11" in issue["diagnostics"]
    assert_no_identifiers(r.text)
    r = await post(client, "/fhir", appointment, FHIR_JSON)
    assert r.status_code == 400 and "/fhir/{type}" in r.json()["issue"][0]["diagnostics"]
    assert await records_on(services, "hub.ingest.health") == []


async def test_fhir_batch_and_transaction_responses(client: httpx.AsyncClient, services: Services) -> None:
    bundle = json.loads(fixture("health/bundle-message-appointments.json"))
    r = await post(client, "/fhir", json.dumps(bundle), FHIR_JSON)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["resourceType"] == "Bundle" and answer["type"] == "batch-response"
    assert len(answer["entry"]) == len(bundle["entry"])
    created = [e["response"] for e in answer["entry"] if e["response"]["status"] == "201 Created"]
    assert len(created) == 3
    assert all(c["location"].startswith("http://hub.test/fhir/Appointment/") and "/_history/" in c["location"]
               for c in created), created
    again = (await post(client, "/fhir", json.dumps(bundle), FHIR_JSON)).json()
    assert [e["response"]["status"] for e in again["entry"]].count("201 Created") == 0
    assert len(await records_on(services, "hub.ingest.health")) == 3

    collection = json.loads(fixture("health/bundle-collection-cerys.json"))
    collection["entry"].append(
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "Weight"}}}
    )
    r = await post(client, "/fhir", json.dumps(collection), FHIR_JSON)
    assert r.status_code == 200
    last = r.json()["entry"][-1]["response"]
    assert last["status"] == "422 Unprocessable Entity"
    assert "not-supported" in [i["code"] for i in last["outcome"]["issue"]]

    tx = json.loads(fixture("health/bundle-transaction-admission.json"))
    r = await post(client, "/fhir", json.dumps(tx), FHIR_JSON)
    assert r.status_code == 200 and r.json()["type"] == "transaction-response"
    tx["entry"][0]["resource"]["identifier"][0]["value"] = "9990000019"
    tx["id"] = "other"
    r = await post(client, "/fhir", json.dumps(tx), FHIR_JSON)
    assert r.status_code == 422 and r.json()["resourceType"] == "OperationOutcome"
    assert any(
        i.get("expression") == ["Bundle.entry[0].resource.identifier[0].value"] for i in r.json()["issue"]
    )
    assert_no_identifiers(r.text)
