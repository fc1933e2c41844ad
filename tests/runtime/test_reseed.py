"""A broker whose log was lost is published to again from the ingest log, and nothing is left out.

The database records, per ingest partition, the next offset the projection holds everything before;
a worker leaves out a record below it as "applied already". Those offsets point into one broker's log.
When `hub up` starts its embedded broker again (the log was in memory), or a hub meets an empty
cluster, :func:`hub.runtime.stack.reseed_if_new` publishes every accepted event again, and the records
take other offsets there: fewer (the old log held a resend twice) or in another order (a request
accepted while the new broker was being seeded took offset 0). The positions must be forgotten then, or
the worker would skip records it never applied: under the fault suite a child's link made again was
lost that way and the link undone before it stayed in force.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from hub.core.events import InboundEvent, SubjectRef
from hub.core.settings import Settings
from hub.db.schema import identity_links, stream_offsets, timeline_entries
from hub.demo.identifiers import nhs_number
from hub.ingest.services import Services
from hub.kafka.broker import EmbeddedBroker
from hub.kafka.topics import INGEST_TOPICS
from hub.runtime.stack import reseed_if_new
from tests.support import spawn, stop, wait_until, worker_on

pytestmark = pytest.mark.broker
T0 = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)
SLT = {"agency_id": "7A6", "agency_name": None, "sector": "health", "service_code": None, "service_name": "SLT"}
CHILD = SubjectRef("nhs-number", nhs_number(4242))
#: where a lost log had taken every partition (it held resends twice): beyond anything the new log holds
STALE = 50


def _link() -> InboundEvent:
    return InboundEvent(record_type="IdentityLinked", sector="hub", source_system="enrolment", source_id="link-1",
                        occurred_at=T0, subject=CHILD,
                        body={"action": "link", "child_id": "child-1", "household_id": "hh-1",
                              "identifier_system": "nhs-number"})


def _appointment(i: int) -> InboundEvent:
    return InboundEvent(record_type="AppointmentBooked", sector="health", source_system="pas", source_id=f"appt-{i}",
                        occurred_at=T0 + timedelta(hours=i), subject=CHILD,
                        body={"service": SLT, "start": T0 + timedelta(days=30, hours=i)})


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[Settings, dict[str, str]]]:
    broker = EmbeddedBroker().start()
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    settings, env = worker_on(broker.bootstrap, url, tmp_path / "data", "w-reseed")
    yield settings, env
    broker.stop()


async def _reseed_between(settings: Settings, before: list[InboundEvent], after: list[InboundEvent]) -> int:
    """Accept ``before``; the database holds positions in a lost log; the broker is seeded again as `hub up`
    does with a new one; then accept ``after``. Returns how many events the reseed published."""
    svc = Services.build(settings)
    await svc.start()
    try:
        await svc.ingest.accept(before)
        with svc.store.engine.begin() as conn:
            conn.execute(stream_offsets.insert(), [
                {"topic": t.name, "partition": p, "next_offset": STALE, "updated_at": T0}
                for t in INGEST_TOPICS for p in range(settings.topic_partitions)])
        published = await reseed_if_new(svc, settings.kafka_bootstrap, new=True)
        await svc.ingest.accept(after)
    finally:
        await svc.stop()
        svc.store.engine.dispose()
    return published


def test_records_published_again_to_a_new_log_are_all_applied(hub: tuple[Settings, dict[str, str]],
                                                             tmp_path: Path) -> None:
    settings, env = hub
    before = [_link(), _appointment(1), _appointment(2)]
    after = [_appointment(3)]  # accepted once the new log was seeded: it is published once, at a low offset
    assert asyncio.run(_reseed_between(settings, before, after)) == len(before)

    engine = sa.create_engine(settings.effective_database_url)
    worker = spawn(["worker"], env, tmp_path / "worker.log")
    try:
        def appointments() -> list[str]:
            with engine.connect() as conn:
                return sorted(r[0] for r in conn.execute(sa.select(timeline_entries.c.event_id)))

        wait_until(lambda: len(appointments()) == 3, 60, "the three appointments on the timeline")
    finally:
        assert stop(worker) == 0
    with engine.connect() as conn:
        links = conn.execute(sa.select(identity_links.c.child_id, identity_links.c.active)).all()
        positions = {(r.topic, r.partition): r.next_offset for r in conn.execute(sa.select(stream_offsets))}
    engine.dispose()
    assert [tuple(r) for r in links] == [("child-1", True)]
    assert positions and all(n < STALE for n in positions.values())  # positions in the new log, none stale
