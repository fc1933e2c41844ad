"""A stream worker killed (SIGKILL) inside a batch's transaction loses nothing and doubles nothing.

The worker writes a batch's identity links, timeline entries, change feed and the next offset of each
partition in one transaction (:func:`hub.stream.projection.apply`). The test holds the change-feed lock
on PostgreSQL, so the worker's first batch that announces a change stops inside that transaction after
writing its links and entries; the worker is then killed with SIGKILL. Nothing of that batch may be
visible (a batch before it that announced nothing, such as a child's appointment whose link is in a later
batch, needs no lock and may have committed); after a restart the projection, the change feed and the
recorded offsets must agree with what the broker holds: every record once.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition

from hub.core.events import InboundEvent, SubjectRef
from hub.core.settings import Settings
from hub.db.store import Store
from hub.demo.identifiers import nhs_number
from hub.ingest.services import Services
from hub.kafka.broker import EmbeddedBroker
from hub.kafka.topics import INGEST_TOPICS, end_offsets
from hub.stream import projection
from tests.support import spawn, stop, wait_until, worker_on

pytestmark = pytest.mark.broker
T0 = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)
SLT = {"agency_id": "7A6", "agency_name": None, "sector": "health", "service_code": None, "service_name": "SLT"}
CHILDREN = 6
PER_CHILD = 80


def _events() -> list[InboundEvent]:
    out: list[InboundEvent] = []
    for c in range(CHILDREN):
        ident = SubjectRef("nhs-number", nhs_number(700 + c))
        out.append(InboundEvent(record_type="IdentityLinked", sector="hub", source_system="enrolment",
                                source_id=f"link-{c}", occurred_at=T0, subject=ident,
                                body={"action": "link", "child_id": f"child-{c}", "household_id": f"hh-{c // 2}",
                                      "identifier_system": "nhs-number"}))
        out += [InboundEvent(record_type="AppointmentBooked", sector="health", source_system="pas",
                             source_id=f"appt-{c}-{i}", occurred_at=T0 + timedelta(hours=i), subject=ident,
                             body={"service": SLT, "start": T0 + timedelta(days=30, hours=i)})
                for i in range(PER_CHILD)]
    return out


async def _accept(settings: Settings, events: list[InboundEvent]) -> None:
    svc = Services.build(settings)
    await svc.start()
    try:
        await svc.ingest.accept(events)
    finally:
        await svc.stop()
        svc.store.engine.dispose()


async def _broker_ends(bootstrap: str) -> dict[tuple[str, int], int]:
    """The end offset of every ingest partition holding records, as the broker has them."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(t.name, p) for t in INGEST_TOPICS
                 for p in sorted(consumer.partitions_for_topic(t.name) or [])]
        ends = await end_offsets(consumer, parts)
    finally:
        await consumer.stop()
    return {(tp.topic, tp.partition): n for tp, n in ends.items() if n}


@pytest.fixture
def hub(tmp_path: Path, pg_url: str) -> Iterator[tuple[Settings, dict[str, str]]]:
    broker = EmbeddedBroker().start()
    settings, env = worker_on(broker.bootstrap, pg_url, tmp_path / "data", "w-killed")
    yield settings, env
    broker.stop()


def _counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: int(conn.execute(sa.text(f"select count(*) from {t}")).scalar_one())
                for t in ("timeline_entries", "identity_links", "timeline_changes", "stream_offsets")}


def _waiting_on_the_feed_lock(engine: sa.Engine) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(sa.text(
            "select count(*) from pg_stat_activity where datname = current_database() "
            "and wait_event_type = 'Lock' and wait_event = 'advisory' and query like '%pg_advisory_xact_lock%'"
        )).scalar_one())


def test_a_worker_killed_inside_a_batch_transaction_loses_and_doubles_nothing(
        hub: tuple[Settings, dict[str, str]], tmp_path: Path) -> None:
    settings, env = hub
    events = _events()
    asyncio.run(_accept(settings, events))
    ends = asyncio.run(_broker_ends(settings.kafka_bootstrap))
    assert sum(ends.values()) == len(events)

    engine = sa.create_engine(settings.effective_database_url)
    log = tmp_path / "worker.log"
    holder = engine.connect()  # holds the change-feed lock: the worker's batch stops inside its transaction
    holder.execute(sa.text("select pg_advisory_lock(:k)"), {"k": projection.CHANGE_FEED_LOCK})
    worker = spawn(["worker"], env, log)
    try:
        wait_until(lambda: _waiting_on_the_feed_lock(engine), 90, "the worker's batch to wait inside its transaction")
        before = _counts(engine)  # what batches that announced nothing committed without the lock
        assert before["timeline_changes"] == 0 and before["timeline_entries"] < len(events) - CHILDREN
        os.kill(worker.pid, signal.SIGKILL)
        assert worker.wait(30) == -signal.SIGKILL
    finally:
        holder.execute(sa.text("select pg_advisory_unlock(:k)"), {"k": projection.CHANGE_FEED_LOCK})
        holder.close()
        if worker.poll() is None:
            stop(worker)
    # the killed transaction is rolled back as a whole: no link, entry, change or offset of the batch (its
    # server session gets the lock, finds its client gone and ends without a commit)
    wait_until(lambda: not _waiting_on_the_feed_lock(engine), 30, "the killed worker's session to end")
    assert _counts(engine) == before

    worker = spawn(["worker"], env, log)
    try:
        store = Store(engine)
        wait_until(lambda: projection.offsets(store) == ends, 120, "the restarted worker to reach the end of the log")
    finally:
        assert stop(worker) == 0
    entries = len(events) - CHILDREN
    counts = _counts(engine)
    assert counts["timeline_entries"] == entries and counts["identity_links"] == CHILDREN
    # an entry is announced once as it appears in its child's record: ``added`` when its subject's link was
    # projected first, ``joined`` when the link (on the hub topic) came in a later batch than the entry
    appeared = "select event_id, child_id from timeline_changes where kind in ('added', 'joined')"
    with engine.connect() as conn:
        added = Counter(r[0] for r in conn.execute(sa.text(appeared)))
        homes = {r[0]: r[1] for r in conn.execute(sa.text(appeared))}
        versions = Counter(r[0] for r in conn.execute(sa.text("select source_version from timeline_entries")))
    assert len(added) == entries and set(added.values()) == {1}  # every entry announced once: none lost or doubled
    assert Counter(homes.values()) == {f"child-{c}": PER_CHILD for c in range(CHILDREN)}
    assert versions == {1: entries}
    engine.dispose()


def test_offsets_never_move_back_when_a_batch_is_delivered_again(tmp_path: Path) -> None:
    """A batch redelivered after a crash (Kafka's committed offset lagging the database's) changes nothing:
    neither the projection, nor the change feed, nor the recorded offsets."""
    store = Store.open(f"sqlite:///{tmp_path / 'hub.db'}")
    meta = {"event_id": "e-1", "source_system": "pas", "source_id": "a-1", "source_version": 1, "occurred_at": T0,
            "received_at": T0, "subject": "s-1", "category": "general", "status": "active", "mapping": None}
    link = ("IdentityLinked", "uk.familyhub.IdentityLinked",
            {"meta": {**meta, "event_id": "l-1", "source_id": "link-1"}, "action": "link", "child_id": "c-1",
             "household_id": "h-1", "identifier_system": "nhs-number"})
    entry = ("AppointmentBooked", "uk.familyhub.AppointmentBooked",
             {"meta": meta, "service": SLT, "start": T0, "end": None, "location": None, "purpose": None,
              "professional": None, "contact_type": None, "joint": None})
    assert projection.apply(store, [link, entry], offsets={("hub.ingest.health", 0): 2}) == 2
    later = {**meta, "event_id": "e-2", "source_id": "a-2"}
    projection.apply(store, [("AppointmentBooked", "x", {**entry[2], "meta": later})],
                     offsets={("hub.ingest.health", 0): 3, ("hub.ingest.health", 1): 1})
    before = _counts(store.engine)
    assert projection.apply(store, [link, entry], offsets={("hub.ingest.health", 0): 2}) == 0
    assert _counts(store.engine) == before
    assert projection.offsets(store) == {("hub.ingest.health", 0): 3, ("hub.ingest.health", 1): 1}
    store.engine.dispose()
