"""Hostile input at the ingest edge: every case is a 4xx problem (an OperationOutcome on /fhir) or a
success, never a 5xx, nothing good is lost, nothing personal is echoed, and /healthz keeps answering."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_helpers import fixture

from connectors.sectors import reader
from hub.api.app import create_app
from hub.core.logging import configure_logging
from hub.core.settings import Settings
from hub.ingest.relay import relay_unpublished
from hub.ingest.services import Services
from hub.kafka.broker import EmbeddedBroker
from hub.kafka.topics import ensure_topics
from tests.api.conftest import ROOT, token_header

pytestmark = pytest.mark.broker
JSON, NDJSON, CSV = "application/json", "application/x-ndjson", "text/csv"
FHIR_JSON, FHIR_XML = "application/fhir+json", "application/fhir+xml"
DEEP = "[" * 1000 + "]" * 1000
GOOD_NHS = "9434765919"
BAD_NHS = "9434765918"  # fails the modulus-11 check


async def build(tmp_path: Path, **overrides: Any) -> tuple[EmbeddedBroker, Services]:
    broker = EmbeddedBroker().start()
    settings = Settings(kafka_bootstrap=broker.bootstrap, kafka_embedded=True,
                        database_url=f"sqlite:///{tmp_path / 'hub.db'}", data_dir=tmp_path / "data",
                        schema_dir=ROOT / "schemas", pseudonym_key="k" * 32, **overrides)  # type: ignore[arg-type]
    await ensure_topics(settings)
    services = Services.build(settings)
    await services.start()
    return broker, services


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Services]]:
    broker, services = await build(tmp_path)
    app = create_app(services)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test",
                                 headers=token_header(services, "agency", "abuhb-pas", agency="7A6")) as c:
        yield c, services
    await services.stop()
    services.store.engine.dispose()
    broker.stop()


async def post(client: httpx.AsyncClient, route: str, body: bytes | str, content_type: str,
               **headers: str) -> httpx.Response:
    r = await client.post(route, content=body, headers={"Content-Type": content_type, **headers})
    assert r.status_code < 500, f"{route}: {r.status_code} {r.text[:500]}"
    assert (await client.get("/healthz")).status_code == 200
    return r


def plan(**changes: Any) -> dict[str, Any]:
    """A social-care child protection plan event (a JSON object: all-or-nothing)."""
    return {**json.loads(fixture("social_care/cp-plan-started.json")), **changes}


def event(**changes: Any) -> dict[str, Any]:
    """An event in the hub's own shape for /v1/events."""
    return {"record_type": "AttendanceRecorded", "sector": "health", "source_system": "abuhb-pas",
            "source_id": "att-1", "occurred_at": datetime(2026, 10, 1, tzinfo=UTC).isoformat(),
            "subject": {"system": "nhs-number", "value": GOOD_NHS},
            "body": {"appointment_id": "appt-1", "outcome": "attended",
                     "service": {"agency_id": "7A6", "sector": "health", "service_name": "Physiotherapy"}},
            **changes}


def extension_chain(depth: int) -> dict[str, Any]:
    inner: dict[str, Any] = {"url": "https://example.org/x", "valueString": "end"}
    for _ in range(depth):
        inner = {"url": "https://example.org/x", "extension": [inner]}
    return inner


def is_outcome(r: httpx.Response) -> bool:
    return r.headers["content-type"].startswith("application/fhir+json") and r.json()["resourceType"] == \
        "OperationOutcome"


# --- shape limits -------------------------------------------------------------------------------


@pytest.mark.parametrize("route,content_type", [
    ("/v1/events", JSON), ("/v1/ingest/health", FHIR_JSON), ("/v1/ingest/social-care", JSON),
    ("/v1/ingest/education", JSON), ("/fhir", FHIR_JSON), ("/fhir/Appointment", FHIR_JSON),
])
async def test_json_nested_1000_deep_is_a_422_naming_the_limit(
        hub: tuple[httpx.AsyncClient, Services], route: str, content_type: str) -> None:
    client, services = hub
    for body in (DEEP, '{"a":' * 1000 + "1" + "}" * 1000):
        r = await post(client, route, body, content_type)
        assert r.status_code == 422, r.text
        assert "64 levels" in r.text
        assert is_outcome(r) == route.startswith("/fhir")
    assert services.store.log_count() == 0


async def test_nesting_without_a_content_type_is_refused_too(hub: tuple[httpx.AsyncClient, Services]) -> None:
    client, _ = hub
    r = await client.post("/v1/events", content=DEEP)
    assert r.status_code == 422 and "64 levels" in r.text


async def test_fhir_extension_chain_150_deep_is_refused(hub: tuple[httpx.AsyncClient, Services]) -> None:
    client, services = hub
    resource = json.loads(fixture("health/appointment-booked.json"))
    resource["extension"] = [extension_chain(150)]
    for route in ("/fhir/Appointment", "/v1/ingest/health"):
        r = await post(client, route, json.dumps(resource), FHIR_JSON)
        assert r.status_code == 422, r.text
    xml = fixture("health/appointment-booked.xml").decode()
    chain = '<extension url="https://example.org/x">' * 150 + '<valueString value="end"/>' + "</extension>" * 150
    deep_xml = xml.replace('<status value="booked"/>', chain + '<status value="booked"/>', 1)
    assert deep_xml != xml
    for route in ("/fhir/Appointment", "/v1/ingest/health"):
        r = await post(client, route, deep_xml, FHIR_XML)
        assert 400 <= r.status_code < 500, r.text
    assert services.store.log_count() == 0


async def test_versions_beyond_a_long_are_refused(hub: tuple[httpx.AsyncClient, Services]) -> None:
    client, services = hub
    r = await post(client, "/v1/events", json.dumps([event(source_version=2**63)]), JSON)
    assert r.status_code == 422 and "/0/source_version" in r.text
    r = await post(client, "/v1/ingest/social-care", json.dumps(plan(version=2**63)), JSON)
    assert r.status_code == 422, r.text
    r = await post(client, "/v1/ingest/social-care", json.dumps([plan(version=2**63), plan(event_id="NPT-2")]),
                   JSON)
    assert r.status_code == 207 and r.json()["accepted"] == 1, r.text
    r = await post(client, "/v1/ingest/social-care", '{"version": ' + "9" * 5000 + "}", JSON)
    assert r.status_code == 400 and "number too long" in r.text
    assert services.store.log_count() == 1


# --- partial batches ----------------------------------------------------------------------------


async def test_ndjson_with_a_line_that_is_not_utf8_keeps_its_good_lines(
        hub: tuple[httpx.AsyncClient, Services]) -> None:
    client, services = hub
    lines = [json.dumps(plan(event_id="NPT-1")).encode(), b'{"event_id": "NPT-\xff\xfe"}',
             json.dumps(plan(event_id="NPT-3")).encode(), DEEP.encode()]
    r = await post(client, "/v1/ingest/social-care", b"\n".join(lines), NDJSON)
    assert r.status_code == 207, r.text
    answer = r.json()
    assert answer["accepted"] == 2 and answer["rejected"] == 2
    details = {p["row"]: p["detail"] for p in answer["problems"]}
    assert "not UTF-8" in details[2] and "64 levels" in details[4]
    assert services.store.log_count() == 2


async def test_csv_quirks_answer_rows_not_errors(hub: tuple[httpx.AsyncClient, Services]) -> None:
    client, _services = hub
    text = fixture("social_care/newport-events.csv").decode()
    header, first, *_ = text.splitlines()
    quirky = "\ufeff" + header + "\n" + first + "\n"
    quirky += first.replace("NPT-REF-0001", "NPT-Q-1").replace("Family need", '"Family\nneed"', 1) + "\n"
    quirky += first.replace("NPT-REF-0001", 'NPT-"Q-2') + "\n"
    quirky += 'referral,"NPT-Q-3,1\n'  # an unterminated quote swallows the rest
    r = await post(client, "/v1/ingest/social-care", quirky.encode(), CSV)
    assert r.status_code in (200, 207), r.text
    assert r.json()["accepted"] >= 2
    r = await post(client, "/v1/ingest/social-care", b"a,b\n\x00,1\n", CSV)
    assert r.status_code in (207, 422), r.text


async def test_batch_bundle_keeps_good_entries_and_transaction_stays_all_or_nothing(
        hub: tuple[httpx.AsyncClient, Services]) -> None:
    client, services = hub
    appointment = json.loads(fixture("health/appointment-booked.json"))
    deep = {**appointment, "id": "appt-deep", "extension": [extension_chain(20)]}
    broken = {**appointment, "id": "appt-bad", "status": 42}
    good = {**appointment, "id": "appt-good"}
    for kind, status in (("transaction", 422), ("batch", 200)):
        bundle = {"resourceType": "Bundle", "type": kind, "entry": [{"resource": broken}, {"resource": good},
                                                                     {"resource": deep}]}
        r = await post(client, "/fhir", json.dumps(bundle), FHIR_JSON)
        assert r.status_code == status, r.text
    assert services.store.log_count() >= 1


# --- size limits --------------------------------------------------------------------------------


async def chunks(total: int, size: int = 512) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        yield b" " * min(size, total - sent)
        sent += size


async def test_chunked_body_over_the_limit_is_413(tmp_path: Path) -> None:
    broker, services = await build(tmp_path, max_body_bytes=2048)
    app = create_app(services)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test",
                                     headers=token_header(services, "agency", "a", agency="7A6")) as client:
            for route, media in (("/v1/events", JSON), ("/v1/ingest/social-care", JSON), ("/fhir", FHIR_JSON)):
                r = await client.post(route, content=chunks(8192), headers={"Content-Type": media})
                assert "content-length" not in r.request.headers
                assert r.status_code == 413, r.text
                assert "2048 bytes" in r.text
                assert is_outcome(r) == route.startswith("/fhir")
            assert (await client.get("/healthz")).status_code == 200
    finally:
        await services.stop()
        services.store.engine.dispose()
        broker.stop()


async def test_a_record_over_the_per_record_limit_is_413_before_it_is_logged(
        hub: tuple[httpx.AsyncClient, Services]) -> None:
    client, services = hub
    huge = plan(event_id="NPT-HUGE", reason="x" * (services.settings.max_record_bytes + 1))
    r = await post(client, "/v1/ingest/social-care", json.dumps(huge), JSON)
    assert r.status_code == 413, r.text
    assert r.json()["type"].endswith("/too-large") and "at most" in r.text
    r = await post(client, "/v1/ingest/social-care", json.dumps([huge, plan(event_id="NPT-OK")]), JSON)
    assert r.status_code == 207 and r.json()["accepted"] == 1, r.text
    big_event = event(body={**event()["body"], "appointment_id": "x" * services.settings.max_record_bytes})
    r = await post(client, "/v1/events", json.dumps([big_event]), JSON)
    assert r.status_code == 413, r.text
    assert services.store.log_count() == 1  # only NPT-OK
    assert services.store.log_count(unpublished_only=True) == 0


async def test_a_record_the_broker_refuses_after_logging_is_dead_lettered_and_the_rest_flows(
        hub: tuple[httpx.AsyncClient, Services]) -> None:
    client, services = hub
    services.ingest.max_record_bytes = None  # as if the broker's limit were below the hub's
    huge = plan(event_id="NPT-HUGE", reason="x" * (services.settings.kafka_max_request_bytes + 1))
    r = await post(client, "/v1/ingest/social-care", json.dumps([huge, plan(event_id="NPT-OK")]), JSON)
    assert r.status_code == 207, r.text
    answer = r.json()
    assert answer["accepted"] == 1 and "dead-lettered" in answer["problems"][0]["detail"]
    dead = services.store.dead_letters()
    assert len(dead) == 1 and dead[0]["error_class"] == "RecordsRefusedError"
    assert services.store.log_count(unpublished_only=True) == 0
    assert services.store.oldest_unpublished() is None


async def test_the_relay_dead_letters_a_stuck_record_and_publishes_the_rows_after_it(
        hub: tuple[httpx.AsyncClient, Services], capfd: pytest.CaptureFixture[str]) -> None:
    """A log that already holds a record the broker refuses (as before the edge limits) unblocks."""
    _client, services = hub
    services.ingest.max_record_bytes = None
    huge = plan(event_id="NPT-HUGE", reason="x" * (services.settings.kafka_max_request_bytes + 1))
    body = json.dumps([huge, plan(event_id="NPT-2"), plan(event_id="NPT-3")]).encode()
    read = reader("social_care").read(body, JSON)
    ready, _ = services.ingest.prepare([x.event for x in read.results if x.event is not None])
    services.store.append([p.row for p in ready if p is not None])
    assert services.store.log_count(unpublished_only=True) == 3
    assert await relay_unpublished(services.store, services.publisher) == 2
    assert services.store.log_count(unpublished_only=True) == 0
    assert len(services.store.dead_letters()) == 1
    assert await relay_unpublished(services.store, services.publisher) == 0  # it moved on for good
    assert "ingest.dead_lettered" in capfd.readouterr().out


# --- versions and content -----------------------------------------------------------------------


async def test_a_resend_with_other_content_is_409_naming_the_event_id(
        hub: tuple[httpx.AsyncClient, Services]) -> None:
    client, services = hub
    first = (await post(client, "/v1/ingest/social-care", json.dumps(plan()), JSON)).json()
    event_id = first["results"][0]["event_id"]
    same = (await post(client, "/v1/ingest/social-care", json.dumps(plan()), JSON)).json()
    assert same["duplicates"] == 1
    secret = "Moved to a refuge on Mill Lane"
    r = await post(client, "/v1/ingest/social-care", json.dumps(plan(reason=secret)), JSON)
    assert r.status_code == 409, r.text
    assert event_id in r.text and secret not in r.text and r.json()["type"].endswith("/conflict")
    # a higher version is an update
    r = await post(client, "/v1/ingest/social-care", json.dumps(plan(reason=secret, version=2)), JSON)
    assert r.status_code == 200 and r.json()["accepted"] == 1
    # /v1/events: the whole request is refused before anything is logged
    await post(client, "/v1/events", json.dumps([event()]), JSON)
    before = services.store.log_count()
    changed = event(body={**event()["body"], "outcome": "did_not_attend"})
    r = await post(client, "/v1/events", json.dumps([event(source_id="att-new"), changed]), JSON)
    assert r.status_code == 409 and r.json()["errors"][0]["pointer"] == "[1]", r.text
    assert services.store.log_count() == before


async def test_a_lower_version_is_answered_stale(hub: tuple[httpx.AsyncClient, Services]) -> None:
    client, services = hub
    await post(client, "/v1/ingest/social-care", json.dumps(plan(version=3)), JSON)
    r = await post(client, "/v1/ingest/social-care", json.dumps(plan(version=2, reason="older")), JSON)
    assert r.status_code == 200 and r.json()["results"][0]["status"] == "stale", r.text
    r = await post(client, "/v1/events", json.dumps([event(source_version=5)]), JSON)
    r = await post(client, "/v1/events", json.dumps([event(source_version=4)]), JSON)
    assert r.status_code == 200 and r.json()[0]["status"] == "stale"
    assert services.store.log_count() == 2


# --- identifiers and headers --------------------------------------------------------------------


async def test_v1_events_checks_nhs_numbers_like_every_route(hub: tuple[httpx.AsyncClient, Services]) -> None:
    client, services = hub
    bad = event(subject={"system": "nhs-number", "value": BAD_NHS})
    r = await post(client, "/v1/events", json.dumps([bad]), JSON)
    assert r.status_code == 422, r.text
    (error,) = r.json()["errors"]
    assert error["pointer"] == "/0/subject/value" and "modulus-11" in error["detail"]
    assert BAD_NHS not in r.text
    r = await post(client, "/v1/events", json.dumps([event(subject={"system": "upn", "value": "A12345678901X"})]),
                   JSON)
    assert r.status_code == 422 and "upn" in r.text
    assert services.store.log_count() == 0


async def test_idempotency_key_is_logged_only_as_a_digest(hub: tuple[httpx.AsyncClient, Services]) -> None:
    client, _ = hub
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    try:
        key = "Jane Smith 01/02/2015 NP20 1AB"
        await post(client, "/v1/ingest/social-care", json.dumps(plan()), JSON, **{"Idempotency-Key": key})
        await post(client, "/fhir/Appointment", "{", FHIR_JSON, **{"Idempotency-Key": key})
    finally:
        configure_logging("INFO", "json")
    logs = stream.getvalue()
    assert "ingest.batch" in logs
    for part in ("Jane", "Smith", "01/02/2015", "NP20", key):
        assert part not in logs


# --- XML ----------------------------------------------------------------------------------------

LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">]>
<Patient xmlns="http://hl7.org/fhir"><id value="p1"/><name><family value="&lol5;"/></name></Patient>"""
EXTERNAL = """<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Patient xmlns="http://hl7.org/fhir"><id value="p1"/><name><family value="&xxe;"/></name></Patient>"""


async def test_xml_entity_expansion_and_external_entities_are_refused(
        hub: tuple[httpx.AsyncClient, Services]) -> None:
    client, services = hub
    for body in (LAUGHS, EXTERNAL):
        for route in ("/fhir/Patient", "/v1/ingest/health"):
            r = await post(client, route, body, FHIR_XML)
            assert 400 <= r.status_code < 500 or r.status_code == 200, r.text
            assert "lollol" not in r.text and "root:" not in r.text
    assert services.store.log_count() == 0


def test_hub_ingest_reports_a_nested_file_and_goes_on(tmp_path: Path, broker: EmbeddedBroker) -> None:
    from tests.support import hub_env, run_hub

    bad, good = tmp_path / "a-deep.json", tmp_path / "b-good.json"
    bad.write_text(DEEP)
    good.write_text(json.dumps(plan()))
    env = hub_env(data_dir=tmp_path / "data", kafka_bootstrap=broker.bootstrap, kafka_embedded="true")
    asyncio.run(ensure_topics(Settings(kafka_bootstrap=broker.bootstrap, kafka_embedded=True)))
    result = run_hub(["ingest", "social-care", str(bad), str(good)], env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "a-deep.json" in result.stderr and "64 levels" in result.stderr
    assert "1 accepted" in result.stdout

