"""Hostile input through `hub up` over HTTP: conflicting resends, deep nesting, huge integers, broken
NDJSON lines, chunked bodies over the limit, bad NHS numbers, personal data in headers and a very large
transaction Bundle. Every case is a success or a 4xx problem, never a 5xx, and /healthz keeps answering.
One stack serves the whole file (started once), with a small body limit; the large Bundle goes to the
same stack restarted with a larger one."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from hub.demo.identifiers import nhs_number
from tests.hub.test_stack import HubUp, events
from tests.support import bearer, enrol_child, wait_until

pytestmark = pytest.mark.broker
AGENCY = bearer("agency", "abuhb-pas", agency="7A6")
SOCIAL_CARE = bearer("agency", "npt-cs", agency="W06000022")
JSON, NDJSON, FHIR_JSON = "application/json", "application/x-ndjson", "application/fhir+json"
SMALL_LIMIT = 65536
DEEP = "[" * 1000 + "]" * 1000
BAD_NHS = "9434765918"  # fails the modulus-11 check
PERSON = "LA-HOSTILE-1"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubUp]:
    up = HubUp(tmp_path_factory.mktemp("hostile"))
    up.env["HUB_MAX_BODY_BYTES"] = str(SMALL_LIMIT)
    up.start()
    try:
        yield up
    finally:
        up.stop()


def post(hub: HubUp, route: str, body: Any, content_type: str = JSON, auth: dict[str, str] = AGENCY,
         timeout: float = 60, headers: dict[str, str] | None = None) -> httpx.Response:
    content = json.dumps(body) if isinstance(body, list | dict) else body
    r = httpx.post(f"{hub.base}{route}", content=content, timeout=timeout,
                   headers={**auth, "Content-Type": content_type, **(headers or {})})
    assert r.status_code < 500, f"{route}: {r.status_code} {r.text[:500]}"
    assert httpx.get(f"{hub.base}/healthz", timeout=5).status_code == 200
    return r


def entry(hub: HubUp, event_id: str, household: str = "") -> dict[str, Any] | None:
    return next((e for e in hub.timeline(household) if e["event_id"] == event_id), None)


def plan(event_id: str, **changes: Any) -> dict[str, Any]:
    """A social-care child protection plan event about the second enrolled child."""
    return {"event_type": "cp_plan_started", "event_id": event_id, "version": 1,
            "occurred_at": "2026-06-10T10:00:00+01:00", "person_id": PERSON, "la_code": "W06000022",
            "la_name": "Newport City Council", "team": "Safeguarding Hub",
            "worker": {"id": "SW-0777", "name": "Social worker", "role": "Social worker"},
            "initial_category_of_abuse": "NEG", "reason": "Initial child protection conference", **changes}


# --- (a) versions and content -------------------------------------------------------------------


def test_a_conflicting_resend_is_409_and_a_lower_version_is_stale(hub: HubUp) -> None:
    first = events(1)[0] | {"source_id": "hostile-a", "source_version": 3}
    r = post(hub, "/v1/events", [first])
    assert r.status_code == 200, r.text
    event_id = r.json()[0]["event_id"]
    wait_until(lambda: entry(hub, event_id), 30, "the first content on the timeline")
    before = entry(hub, event_id)

    assert first["body"]["outcome"] == "did_not_attend"
    changed = first | {"body": {**first["body"], "outcome": "attended"}}
    r = post(hub, "/v1/events", [changed])
    assert r.status_code == 409, r.text
    assert event_id in r.text and r.json()["type"].endswith("/conflict")

    older = first | {"source_version": 2, "body": {**first["body"], "outcome": "attended"}}
    r = post(hub, "/v1/events", [older])
    assert r.status_code == 200 and r.json()[0]["status"] == "stale", r.text
    r = post(hub, "/v1/events", [first])
    assert r.status_code == 200 and r.json()[0]["status"] == "duplicate", r.text
    hub_entry = entry(hub, event_id)
    assert hub_entry == before, (before, hub_entry)


# --- (b) shape: nesting, integers, NDJSON -------------------------------------------------------


@pytest.mark.parametrize("route,content_type", [
    ("/v1/events", JSON), ("/v1/ingest/social-care", JSON), ("/fhir", FHIR_JSON)])
def test_json_nested_1000_deep_is_a_4xx_problem(hub: HubUp, route: str, content_type: str) -> None:
    r = post(hub, route, DEEP, content_type)
    assert 400 <= r.status_code < 500, r.text
    if route == "/fhir":
        assert r.headers["content-type"].startswith("application/fhir+json")
        assert r.json()["resourceType"] == "OperationOutcome"
    else:
        assert r.headers["content-type"].startswith("application/problem+json")
    assert "64 levels" in r.text


def test_a_version_beyond_a_long_is_4xx(hub: HubUp) -> None:
    r = post(hub, "/v1/events", [events(1)[0] | {"source_id": "hostile-long", "source_version": 2**63 + 1}])
    assert 400 <= r.status_code < 500 and "source_version" in r.text, r.text
    r = post(hub, "/v1/ingest/social-care", plan("NPT-LONG", version=2**63 + 1), auth=SOCIAL_CARE)
    assert 400 <= r.status_code < 500, r.text


def test_ndjson_with_a_line_that_is_not_utf8_keeps_its_good_lines(hub: HubUp) -> None:
    household, _ = enrol_child(hub.base, "cc-1", "la-person-id", PERSON)
    lines = [json.dumps(plan("NPT-H-1")).encode(), b'{"event_id": "NPT-\xff\xfe"}',
             json.dumps(plan("NPT-H-3")).encode()]
    r = post(hub, "/v1/ingest/social-care", b"\n".join(lines), NDJSON, auth=SOCIAL_CARE)
    assert r.status_code == 207, r.text
    answer = r.json()
    assert answer["accepted"] == 2 and answer["rejected"] == 1, answer
    assert "not UTF-8" in answer["problems"][0]["detail"]
    ids = {x["event_id"] for x in answer["results"] if x.get("event_id")}
    ig = bearer("ig_officer", "ig-1") | {"X-Investigation-Reason": "checking an agency's import"}

    def on_timeline() -> set[str]:  # read as IG with a reason: a coordinator without consent sees no plans
        r = httpx.get(f"{hub.base}/v1/households/{household}/timeline", params={"limit": 500}, headers=ig, timeout=5)
        return {e["event_id"] for e in r.json()["entries"]} if r.status_code == 200 else set()

    wait_until(lambda: ids <= on_timeline(), 30, "the good lines on the timeline")


# --- (c) size and identifiers on /v1/events -----------------------------------------------------


def chunks(total: int, size: int = 4096) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b" " * min(size, total - sent)
        sent += size


def test_a_chunked_body_over_the_limit_is_413_and_nothing_is_logged(hub: HubUp) -> None:
    good = json.dumps([events(1)[0] | {"source_id": "hostile-chunked"}]).encode()

    def body() -> Iterator[bytes]:
        yield good[:-1]
        yield from chunks(SMALL_LIMIT * 2)
        yield b"]"

    r = httpx.post(f"{hub.base}/v1/events", content=body(), headers={**AGENCY, "Content-Type": JSON}, timeout=30)
    assert "content-length" not in r.request.headers
    assert r.status_code == 413, r.text
    assert f"{SMALL_LIMIT} bytes" in r.text
    assert httpx.get(f"{hub.base}/healthz", timeout=5).status_code == 200
    # nothing was logged: the same event sent whole afterwards is new, not a duplicate
    r = post(hub, "/v1/events", good)
    assert r.status_code == 200 and r.json()[0]["status"] == "accepted", r.text


def test_an_nhs_number_failing_modulus_11_is_422_naming_the_field_and_rule(hub: HubUp) -> None:
    bad = events(1)[0] | {"source_id": "hostile-nhs", "subject": {"system": "nhs-number", "value": BAD_NHS}}
    r = post(hub, "/v1/events", [bad])
    assert r.status_code == 422, r.text
    (error,) = r.json()["errors"]
    assert error["pointer"] == "/0/subject/value" and "modulus-11" in error["detail"]
    assert BAD_NHS not in r.text


# --- (d) personal data in a header never reaches the log ----------------------------------------


def test_an_idempotency_key_with_personal_data_is_not_logged(hub: HubUp) -> None:
    key = "Jane Smith 01/02/2015"
    r = post(hub, "/v1/events", [events(1)[0] | {"source_id": "hostile-key"}], headers={"Idempotency-Key": key})
    assert r.status_code == 200, r.text
    r = post(hub, "/fhir/Appointment", "{", FHIR_JSON, headers={"Idempotency-Key": key})
    assert 400 <= r.status_code < 500, r.text
    wait_until(lambda: "ingest" in hub.log.read_text(errors="replace"), 10, "the ingest in the log")
    text = hub.log.read_text(errors="replace")
    for part in (key, "Jane", "Smith", "01/02/2015"):
        assert part not in text


# --- (e) doors that should stay shut, and say so in the API's own words ------------------------


def test_a_path_no_route_matches_is_a_problem_document_that_does_not_repeat_the_path(hub: HubUp) -> None:
    nhs = nhs_number(7)  # an agency's system that typed a child's NHS number into the path
    r = httpx.get(f"{hub.base}/v1/children/{nhs}/reports", headers=AGENCY, timeout=10)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json", r.text
    assert r.json()["type"].endswith("/not-found") and r.json()["title"] == "Not Found"
    assert nhs not in r.text
    r = httpx.delete(f"{hub.base}/v1/events", headers=AGENCY, timeout=10)
    assert r.status_code == 405 and r.headers["content-type"] == "application/problem+json", r.text
    assert r.json()["type"].endswith("/method-not-allowed") and "POST" in r.headers["allow"]
    assert nhs not in hub.log.read_text(errors="replace")


def test_a_token_whose_subject_is_an_nhs_number_is_refused_at_the_door_without_repeating_it(hub: HubUp) -> None:
    # a misconfigured identity provider naming the caller by a child's NHS number: the hub's own tool will not
    # make such a token, so it is signed here as the provider would
    import jwt

    from hub.core.settings import Settings
    from tests.support import TEST_JWT_KEY

    nhs, s, now = nhs_number(8), Settings(jwt_key=TEST_JWT_KEY), int(time.time())  # type: ignore[call-arg]
    token = jwt.encode({"sub": nhs, "role": "coordinator", "iss": s.jwt_issuer, "aud": s.jwt_audience,
                        "iat": now, "nbf": now, "exp": now + 300}, TEST_JWT_KEY, algorithm="HS256")
    r = httpx.get(f"{hub.base}/v1/households", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json", r.text
    assert "pseudonymous" in r.json()["detail"] and nhs not in r.text
    r = post(hub, "/v1/events", [events(1)[0] | {"source_id": "hostile-sub"}],
             auth={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and nhs not in r.text
    assert nhs not in hub.log.read_text(errors="replace")


# --- (f) a transaction Bundle of 10,000 entries -------------------------------------------------


def big_transaction(n: int) -> dict[str, Any]:
    patient = {"fullUrl": "urn:uuid:patient-1", "request": {"method": "POST", "url": "Patient"},
               "resource": {"resourceType": "Patient", "id": "hostile-pat-1",
                            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number",
                                            "value": nhs_number(5)}]}}
    entries = [patient]
    for i in range(n - 1):
        entries.append({"fullUrl": f"urn:uuid:appt-{i}", "request": {"method": "POST", "url": "Appointment"},
                        "resource": {"resourceType": "Appointment", "id": f"hostile-appt-{i}", "status": "booked",
                                     "start": "2026-11-01T09:00:00+00:00", "end": "2026-11-01T09:30:00+00:00",
                                     "participant": [{"actor": {"reference": "urn:uuid:patient-1"},
                                                      "status": "accepted"}]}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def test_a_transaction_bundle_of_10000_entries_is_never_a_5xx(hub: HubUp) -> None:
    body = json.dumps(big_transaction(10_000))
    assert len(body) > SMALL_LIMIT
    r = post(hub, "/fhir", body, FHIR_JSON)
    assert r.status_code == 413 and r.json()["resourceType"] == "OperationOutcome", r.text

    hub.stop()  # the same stack with room for the Bundle
    hub.env["HUB_MAX_BODY_BYTES"] = str(len(body) * 2)
    hub.start()
    health: list[int] = []
    done = threading.Event()

    def probe() -> None:
        while not done.is_set():
            try:
                health.append(httpx.get(f"{hub.base}/healthz", timeout=10).status_code)
            except httpx.HTTPError:
                health.append(0)
            done.wait(0.5)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        r = httpx.post(f"{hub.base}/fhir", content=body, timeout=600,
                       headers={**AGENCY, "Content-Type": FHIR_JSON})
    finally:
        done.set()
        prober.join()
    assert r.status_code < 500, r.text[:1000]
    if r.status_code >= 400:
        assert r.json()["resourceType"] == "OperationOutcome"
    assert health and set(health) == {200}, health
    assert httpx.get(f"{hub.base}/healthz", timeout=5).status_code == 200
