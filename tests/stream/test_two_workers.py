"""Two stream workers on PostgreSQL give what one gives: the same seeded events through one worker, through
two, and through two with one killed (SIGKILL) mid-run and restarted leave the same timelines, links,
change feed and current sharing decisions, nothing doubled. Each run has its own broker and database."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hub.core.events import InboundEvent, SubjectRef
from hub.core.settings import Settings
from hub.db.store import Store
from hub.demo.identifiers import nhs_number
from hub.demo.journey import report_not_sent_journey
from hub.kafka.broker import EmbeddedBroker
from hub.kafka.topics import ensure_topics
from hub.stream import projection
from tests.stream.test_worker_killed_mid_batch import SLT, _accept, _broker_ends
from tests.support import hub_env, spawn, stop, wait_until

pytestmark = pytest.mark.broker
T0 = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)
JOURNEYS = 4
PER_CHILD = 150


def _events() -> list[InboundEvent]:
    out: list[InboundEvent] = []
    for c in range(JOURNEYS):
        j = report_not_sent_journey(T0, seed=900 + c, child_id=f"c-{c}", household_id=f"hh-{c}")
        nhs = SubjectRef("nhs-number", nhs_number(900 + c))
        out += j.before_consent + j.consent
        out += [InboundEvent(record_type="AppointmentBooked", sector="health", source_system="pas",
                             source_id=f"appt-{c}-{i}", occurred_at=T0 + timedelta(hours=i), subject=nhs,
                             body={"service": SLT, "start": T0 + timedelta(days=30, hours=i)})
                for i in range(PER_CHILD)]
    return out


def _seen(engine: sa.Engine) -> dict[str, Any]:
    """What users see: timelines, links, the change feed (as a multiset) and the current decisions. An entry
    that appears in a child's record is announced once, as ``added`` when its subject's link was projected
    first and as ``joined`` when the link came after it; with two workers the order in which a child's links and
    records are projected differs from run to run (seen under load), so both are counted as "appeared"."""
    q = {"entries": "select event_id, subject, record_type, source_version, late from timeline_entries",
         "links": "select subject, child_id, household_id, active from identity_links",
         "changes": "select household_id, child_id, event_id, case when kind in ('added', 'joined') "
                    "then 'appeared' else kind end from timeline_changes",
         "decisions": "select information_id, recipient_key, child_id, outcome, basis, rule_id "
                      "from share_decisions where current"}
    with engine.connect() as conn:
        return {k: Counter(tuple(r) for r in conn.execute(sa.text(s))) for k, s in q.items()}


def _settled(engine: sa.Engine, ends: dict[tuple[str, int], int]) -> bool:
    if projection.offsets(Store(engine)) != ends:
        return False
    with engine.connect() as conn:
        pos = conn.execute(sa.text("select position from stream_cursors where name = 'sharing'")).scalar()
        newest = conn.execute(sa.text("select max(seq) from timeline_changes")).scalar()
    return pos is not None and pos == newest


@pytest.fixture
def database(pg_server: str) -> Iterator[Any]:
    """A maker of fresh PostgreSQL databases, dropped afterwards."""
    names: list[str] = []
    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")

    def make() -> str:
        names.append(f"hubtest_{uuid.uuid4().hex[:12]}")
        with admin.connect() as conn:
            conn.execute(sa.text(f'create database "{names[-1]}"'))
        return pg_server.rsplit("/", 1)[0] + "/" + names[-1]

    yield make
    with admin.connect() as conn:
        for name in names:
            conn.execute(sa.text(f'drop database if exists "{name}" with (force)'))
    admin.dispose()


def _run(tmp: Path, url: str, events: list[InboundEvent], workers: int, kill: bool) -> dict[str, Any]:
    broker = EmbeddedBroker().start()
    procs: list[Any] = []
    try:
        settings = Settings(kafka_bootstrap=broker.bootstrap, kafka_embedded=True, data_dir=tmp / "data",
                            database_url=url, pseudonym_key="test-key-0123456789abcdef")
        asyncio.run(ensure_topics(settings))
        Store.open(url).engine.dispose()
        asyncio.run(_accept(settings, events))
        ends = asyncio.run(_broker_ends(settings.kafka_bootstrap))
        engine = sa.create_engine(url)
        envs = [hub_env(kafka_bootstrap=broker.bootstrap, kafka_embedded="true", data_dir=tmp / "data",
                        database_url=url, worker_name=f"w{i}", delivery_mode="process") for i in range(workers)]
        procs = [spawn(["worker"], env, tmp / f"w{i}.log") for i, env in enumerate(envs)]
        if kill:  # one worker dies with batches applied and more to come; a new one starts in its place
            wait_until(lambda: 0 < sum(projection.offsets(Store(engine)).values()) < sum(ends.values()), 90,
                       "the workers to be part way through the log")
            os.kill(procs[1].pid, signal.SIGKILL)
            assert procs[1].wait(30) == -signal.SIGKILL
            procs[1] = spawn(["worker"], envs[1], tmp / "w1.log")
        wait_until(lambda: _settled(engine, ends), 120, "the log projected and decided")
        seen = _seen(engine)
        engine.dispose()
        return seen
    finally:
        for p in procs:
            if p.poll() is None:
                stop(p)
        broker.stop()


def test_two_workers_and_a_killed_one_give_what_one_worker_gives(tmp_path: Path, database: Any) -> None:
    events = _events()
    one = _run(tmp_path / "one", database(), events, 1, kill=False)
    entries = sum(1 for e in events if e.record_type != "IdentityLinked")
    assert sum(one["entries"].values()) == entries and set(one["entries"].values()) == {1}
    assert one["decisions"] and set(one["changes"].values()) == {1}  # each change announced once
    two = _run(tmp_path / "two", database(), events, 2, kill=False)
    assert two == one
    killed = _run(tmp_path / "killed", database(), events, 2, kill=True)
    assert killed == one
