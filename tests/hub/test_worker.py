"""The stream worker as a real process against a real broker: projection, ordering, updates,
duplicates, late identity links, and poison messages that are dead-lettered without stopping it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from hub.core.events import InboundEvent, SubjectRef
from hub.core.settings import Settings
from hub.db.store import Store
from hub.demo.identifiers import nhs_number, upn
from hub.ingest.services import Services
from hub.kafka.broker import EmbeddedBroker, free_port
from hub.kafka.topics import ensure_topics
from hub.stream import readmodel
from tests.support import hub_env, spawn, stop, wait_until

pytestmark = pytest.mark.broker
T0 = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)
SLT = {"agency_id": "7A6", "agency_name": None, "sector": "health", "service_code": None, "service_name": "SLT"}
SCHOOL = {"agency_id": "S1", "agency_name": None, "sector": "education", "service_code": None,
          "service_name": "Maes Ebbw Special School"}


def ev(record_type: str, source_id: str, days: float, body: dict[str, Any], *, ident: SubjectRef,
       version: int = 1, sector: str = "health", status: str = "active") -> InboundEvent:
    return InboundEvent(record_type=record_type, sector=sector, source_system="sys", source_id=source_id,  # type: ignore[arg-type]
                        occurred_at=T0 + timedelta(days=days), subject=ident, body=body, source_version=version,
                        status=status)


def link(ident: SubjectRef, child: str, household: str, action: str = "link", days: float = 0,
         version: int = 1) -> InboundEvent:
    return InboundEvent(record_type="IdentityLinked", sector="hub", source_system="enrolment",
                        source_id=f"link-{child}-{ident.system}", source_version=version,
                        occurred_at=T0 + timedelta(days=days), subject=ident,
                        body={"action": action, "child_id": child, "household_id": household,
                              "identifier_system": ident.system})


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Settings, Any]]:
    broker = EmbeddedBroker().start()
    settings = Settings(kafka_bootstrap=broker.bootstrap, kafka_embedded=True, data_dir=tmp_path / "data",
                        database_url=f"sqlite:///{tmp_path / 'hub.db'}", pseudonym_key="test-key-0123456789abcdef")
    asyncio.run(ensure_topics(settings))
    Store.open(settings.effective_database_url)  # migrate before the worker starts
    probe_port = free_port()
    env = hub_env(kafka_bootstrap=broker.bootstrap, kafka_embedded="true", data_dir=tmp_path / "data",
                  database_url=settings.effective_database_url, worker_name="w0", probe_port=probe_port,
                  api_host="127.0.0.1")
    worker = spawn(["worker"], env, tmp_path / "worker.log")
    worker.probe_url = f"http://127.0.0.1:{probe_port}"  # type: ignore[attr-defined]
    yield settings, worker
    stop(worker)
    broker.stop()


async def accept(settings: Settings, events: list[InboundEvent]) -> Services:
    svc = Services.build(settings)
    await svc.start()
    try:
        await svc.ingest.accept(events)
    finally:
        await svc.stop()
    return svc


def entries(store: Store, household: str) -> list[dict[str, Any]]:
    rows, _ = readmodel.timeline(store, household, limit=500)
    return rows


def test_timeline_joins_agencies_in_event_time_order_with_late_link_and_updates(stack: Any) -> None:
    settings, _worker = stack
    nhs, pupil = SubjectRef("nhs-number", nhs_number(1)), SubjectRef("upn", upn(1))
    sib = SubjectRef("nhs-number", nhs_number(2))
    first = [  # arrive out of event-time order, before any identity link: parked, not dropped
        ev("ReportIssued", "r1", 10, {"report_id": "r1", "service": SLT, "report_kind": "speech_and_language_therapy",
                                      "title": "SLT report"}, ident=nhs),
        ev("AppointmentBooked", "a1", 2, {"service": SLT, "start": T0 + timedelta(days=5)}, ident=nhs),
        ev("SchoolPlacement", "p1", 1, {"school": SCHOOL, "start_date": T0.date()}, ident=pupil, sector="education"),
        ev("AppointmentBooked", "a9", 3, {"service": SLT, "start": T0 + timedelta(days=6)}, ident=sib),
    ]
    store = asyncio.run(accept(settings, first)).store
    wait_until(lambda: readmodel.parked_count(store) == 4, what="4 parked entries")
    assert readmodel.households(store) == []

    later = [
        link(nhs, "child-1", "hh-1"), link(pupil, "child-1", "hh-1"), link(sib, "child-2", "hh-1"),
        # rescheduled (v2), a duplicate resend of v1, and an entered-in-error report
        ev("AppointmentBooked", "a1", 2, {"service": SLT, "start": T0 + timedelta(days=8)}, ident=nhs, version=2),
        ev("AppointmentBooked", "a1", 2, {"service": SLT, "start": T0 + timedelta(days=5)}, ident=nhs),
        ev("ReportIssued", "r1", 10, {"report_id": "r1", "service": SLT, "report_kind": "speech_and_language_therapy",
                                      "title": "SLT report"}, ident=nhs, version=2, status="entered_in_error"),
    ]
    asyncio.run(accept(settings, later))
    rows = wait_until(lambda: (r := entries(store, "hh-1")) and len(r) == 3 and r, what="3 entries")
    assert [(r["child_id"], r["record_type"]) for r in rows] == [
        ("child-1", "SchoolPlacement"), ("child-1", "AppointmentBooked"), ("child-2", "AppointmentBooked")]
    assert [r["sector"] for r in rows] == ["education", "health", "health"]
    appt = rows[1]
    assert appt["source_version"] == 2 and "08 Sep 2026" not in appt["summary"] and "09 Sep 2026" in appt["summary"]
    assert readmodel.parked_count(store) == 0
    only_child2, _ = readmodel.timeline(store, "hh-1", child_id="child-2")
    assert [r["child_id"] for r in only_child2] == ["child-2"]

    # a link correction: the sibling was linked to the wrong household; unlinking removes their entries
    asyncio.run(accept(settings, [link(sib, "child-2", "hh-1", action="unlink", days=1, version=2)]))
    wait_until(lambda: len(entries(store, "hh-1")) == 2, what="sibling entries removed")
    assert readmodel.parked_count(store) == 1


def test_poison_messages_are_dead_lettered_and_the_stream_goes_on(stack: Any) -> None:
    settings, worker = stack
    nhs = SubjectRef("nhs-number", nhs_number(3))

    async def produce_garbage() -> None:
        p = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
        await p.start()
        try:
            await p.send_and_wait("hub.ingest.health", b"not avro at all", key=b"s-x")
            await p.send_and_wait("hub.ingest.health", b"\xc3\x01" + b"\xff" * 8 + b"\x00", key=b"s-y")
        finally:
            await p.stop()

    asyncio.run(produce_garbage())
    good = [link(nhs, "child-3", "hh-3"), ev("AppointmentBooked", "a3", 1, {"service": SLT, "start": T0}, ident=nhs)]
    store = asyncio.run(accept(settings, good)).store
    wait_until(lambda: len(entries(store, "hh-3")) == 1, what="good event after poison")
    letters = wait_until(lambda: (d := store.dead_letters()) and len(d) == 2 and d, what="2 dead letters")
    by_class = {d["error_class"]: d for d in letters}
    assert set(by_class) == {"CorruptRecordError", "UnknownFingerprintError"}
    assert bytes(by_class["CorruptRecordError"]["value"]) == b"not avro at all"  # the original bytes are kept
    assert worker.poll() is None

    async def dlq_topic() -> list[Any]:
        from tests.hub.test_ingest import consume_all
        return await consume_all(settings.kafka_bootstrap, "hub.deadletter", 2)

    msgs = asyncio.run(dlq_topic())
    assert len(msgs) == 2
    headers = {dict(m.headers)["__connect.errors.exception.class.name"]: dict(m.headers) for m in msgs}
    corrupt = headers[b"CorruptRecordError"]
    assert corrupt["__connect.errors.topic"] == b"hub.ingest.health"
    assert b"C3 01" in corrupt["__connect.errors.exception.message"]
    unknown = headers[b"UnknownFingerprintError"]
    assert b"unknown writer schema fingerprint" in unknown["__connect.errors.exception.message"]


def test_the_worker_answers_its_orchestrators_probes(stack: Any) -> None:
    """Without the API on it, a worker still tells Kubernetes / Compose it is alive, and when it is ready."""
    _settings, worker = stack
    url = worker.probe_url
    health = wait_until(lambda: _get(f"{url}/healthz"), 60, "the worker's /healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    ready = wait_until(lambda: (r := _get(f"{url}/readyz")) is not None and r.status_code == 200 and r, 60,
                       "the worker to be ready")
    assert ready.json() == {"ready": True}
    assert httpx.get(f"{url}/metrics", timeout=5).status_code == 404  # probes only: nothing else is served


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=5)
    except httpx.TransportError:
        return None  # not listening yet
