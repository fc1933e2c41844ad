"""Error answers name the field and the rule, never the value: every ingest route and every JSON route,
sent a refused body that carries a child's name, date of birth and NHS number, answers 4xx without any of
them (FastAPI's validation answers echo ``input`` by default; connectors' and FHIR models' messages quote
what they refused)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from hub.ingest.services import Services
from tests.api.conftest import token_header

GIVEN, FAMILY = "Ffion", "Ynyswen-Prydderch"
NAME = f"{GIVEN} {FAMILY}"
BORN = "2015-07-23"
BAD_BORN = "2015-07-32"  # a birth date mistyped: refused, and still hers
NHS = "9990000018"
SECRETS = (GIVEN, FAMILY, BORN, BAD_BORN, NHS, "23/07/2015")


def assert_value_free(r: httpx.Response, route: str) -> None:
    assert 400 <= r.status_code < 500, (route, r.status_code, r.text)
    for value in SECRETS:
        assert value not in r.text, f"{route} answered {r.status_code} echoing {value!r}: {r.text[:400]}"


def patient() -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "pat-1", "birthDate": BAD_BORN,
            "name": [{"family": FAMILY, "given": [GIVEN]}],
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": f"{NHS} {GIVEN}"}]}


def appointment() -> dict[str, Any]:
    return {"resourceType": "Appointment", "id": "appt-9", "status": NAME, "start": f"{BORN} {GIVEN}",
            "description": f"Review with {NAME} born {BORN}",
            "participant": [{"actor": {"reference": "Patient/pat-1", "display": NAME}, "status": "accepted"}]}


FHIR_BODIES = {
    "bundle": {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": patient()}, {"resource": appointment()}]},
    "appointment": appointment(),
    "patient-only-fields": {"resourceType": "Appointment", "id": "a", NAME: BORN, "status": "booked"},
}


async def test_ingest_routes_refuse_without_echoing_name_birth_date_or_nhs_number(
        client: httpx.AsyncClient) -> None:
    for label, doc in FHIR_BODIES.items():
        raw = json.dumps(doc).encode()
        for route in ("/v1/ingest/health", "/fhir", "/fhir/Appointment"):
            r = await client.post(route, content=raw, headers={"Content-Type": "application/fhir+json"})
            if r.status_code == 200:  # a batch answer: the refused rows are in it
                assert r.json()["rejected"] >= 1, (route, label, r.text)
            assert_value_free(r, f"{route} ({label})") if r.status_code != 200 else None
            for value in SECRETS:
                assert value not in r.text, (route, label, value, r.text[:400])
    social = {"event_type": "referral", "event_id": "E-1", "version": 1, "occurred_at": f"{BORN} {GIVEN}",
              "person_id": NAME, "nhs_number": f"{NHS}1", "la_code": "W06000022", "team": "CWD",
              "reason": f"{NAME} born {BORN}"}
    csv = (f"event_type,event_id,version,occurred_at,upn,la_code,la_name,school_name\n"
           f"ehc_request,E-2,1,{BAD_BORN},{NAME},873,{NAME},{BORN}\n").encode()
    for route, body, ctype in (
            ("/v1/ingest/social-care", json.dumps(social).encode(), "application/json"),
            ("/v1/ingest/social-care", json.dumps({**social, "event_type": NAME}).encode(), "application/json"),
            ("/v1/ingest/education", csv, "text/csv"),
            ("/v1/ingest/education", json.dumps({"event_type": BORN, "upn": NAME}).encode(), "application/json")):
        r = await client.post(route, content=body, headers={"Content-Type": ctype})
        for value in SECRETS:
            assert value not in r.text, (route, value, r.text[:400])
        assert r.status_code == 422 or r.json()["rejected"] >= 1, (route, r.text)
    events = [{"record_type": "AppointmentBooked", "sector": "health", "source_system": "abuhb-pas",
               "source_id": NAME, "occurred_at": f"{BORN}", "subject": {"system": "nhs-number", "value": NAME},
               "body": {"given": GIVEN, "birthDate": BORN}},
              {"record_type": NAME, "sector": BORN, "source_system": "abuhb-pas", "source_id": "x",
               "occurred_at": BAD_BORN, "subject": {"system": "nhs-number", "value": f"{NHS}7"}, NAME: BORN}]
    for item in events:
        r = await client.post("/v1/events", json=[item])
        assert_value_free(r, "/v1/events")


async def test_json_routes_refuse_without_echoing_name_birth_date_or_nhs_number(
        client: httpx.AsyncClient, services: Services) -> None:
    coordinator = token_header(services, "coordinator", "cc-1")
    r = await client.post("/v1/households", json={"coordinator_id": "cc-1"}, headers=coordinator)
    household = r.json()["household_id"]
    r = await client.post(f"/v1/households/{household}/members", headers=coordinator,
                          json={"kind": "child", "relationship": "child"})
    child = r.json()["member_id"]
    ig = token_header(services, "ig_officer", "ig-1")
    lead = token_header(services, "safeguarding_lead", "sg-1")
    members = f"/v1/households/{household}/members"
    consent = {"resourceType": "Consent", "status": NAME, "dateTime": BAD_BORN,
               "patient": {"reference": "Patient/pat-1", "display": NAME}, "scope": {"text": BORN}}
    calls: list[tuple[str, dict[str, str], Any]] = [
        ("/v1/households", coordinator, {"coordinator_id": [NAME, BORN]}),
        ("/v1/households", coordinator, {NAME: BORN}),
        (members, coordinator, {"kind": NAME, "relationship": "child", "date_of_birth": BAD_BORN}),
        (members, coordinator, {"kind": "child", "relationship": NAME * 3, "date_of_birth": f"{BORN}T{GIVEN}"}),
        (f"{members}/{child}/identifiers", coordinator, {"system": "nhs-number", "value": f"{NHS}1",
                                                         "reason": NAME}),
        (f"{members}/{child}/identifiers", coordinator, {"system": NAME, "value": BORN}),
        (f"{members}/{child}/identifiers", coordinator, {"system": "upn", "value": NAME}),
        (f"{members}/{child}/identifiers/unlink", coordinator, {"system": "nhs-number", "value": f"{BORN}-{GIVEN}"}),
        ("/v1/coordinators/cc-1/caseload", coordinator, {"household_id": {"name": NAME, "dob": BORN}}),
        (f"/v1/households/{household}/children/{child}/consents", coordinator, consent),
        (f"/v1/households/{household}/children/{child}/consents", coordinator, [NAME, BORN]),
        ("/v1/erasures", ig, {"identifier": {"system": "nhs-number", "value": f"{NHS}1"}, "reason": "ER-1"}),
        ("/v1/erasures", ig, {"identifier": {"system": NAME, "value": BORN}, "reason": NAME}),
        ("/v1/erasures", ig, {"member": {"household_id": household, "member_id": child},
                              "reason": f"{NAME} born {BORN}, NHS {NHS}"}),
        (f"/v1/households/{household}/children/{child}/holds/evt-1/release", lead, {"reason": [NAME, BORN]}),
        (f"/v1/households/{household}/children/{child}/overrides", lead,
         {"recipient_agency_id": "7A6", "ends_at": BORN, "justification": NAME, "categories": [NAME]}),
        (f"/v1/households/{household}/children/{child}/overrides", lead,
         {"recipient_agency_id": NAME, "ends_at": f"{BORN}T10:00:00Z", "justification": f"{NAME} {BORN}"}),
    ]
    for route, auth, body in calls:
        r = await client.post(route, json=body, headers=auth)
        assert_value_free(r, route)
