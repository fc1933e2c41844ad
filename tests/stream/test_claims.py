"""Two workers holding the same batch (a rebalance hands a partition over while its old owner still works
on it) apply it once: the second finds it applied and announces nothing twice."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from hub.db.store import Store
from hub.stream import projection
from tests.support import wait_until

T0 = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)
SLT = {"agency_id": "7A6", "agency_name": None, "sector": "health", "service_code": None, "service_name": "SLT"}
TOPIC = "hub.ingest.health"


def _batch(n: int) -> list[tuple[str, str, dict[str, Any]]]:
    meta = {"event_id": "l-1", "source_system": "enrolment", "source_id": "link-1", "source_version": 1,
            "occurred_at": T0, "received_at": T0, "subject": "s-1", "category": "general", "status": "active",
            "mapping": None}
    out: list[tuple[str, str, dict[str, Any]]] = [
        ("IdentityLinked", "uk.familyhub.IdentityLinked",
         {"meta": meta, "action": "link", "child_id": "c-1", "household_id": "h-1", "identifier_system": "nhs-number"})]
    out += [("AppointmentBooked", "uk.familyhub.AppointmentBooked",
             {"meta": {**meta, "event_id": f"e-{i}", "source_system": "pas", "source_id": f"a-{i}"}, "service": SLT,
              "start": T0, "end": None, "location": None, "purpose": None, "professional": None,
              "contact_type": None, "joint": None}) for i in range(n)]
    return out


def _waiting_on_locks(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(
            "select count(*) from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'"
        )).scalar_one())


def test_two_workers_applying_the_same_batch_announce_each_entry_once(pg_url: str) -> None:
    store = Store.open(pg_url)
    batch = _batch(20)
    positions = [(TOPIC, 0, i) for i in range(len(batch))]
    offsets = {(TOPIC, 0): len(batch)}
    holder = store.engine.connect()  # both batches reach their change-feed insert before either commits
    holder.execute(sa.text("select pg_advisory_lock(:k)"), {"k": projection.CHANGE_FEED_LOCK})
    changed: list[int] = []
    workers = [threading.Thread(target=lambda: changed.append(
        projection.apply(store, batch, offsets=offsets, positions=positions))) for _ in range(2)]
    try:
        for w in workers:
            w.start()
        wait_until(lambda: _waiting_on_locks(store.engine) >= 2, 30, "both batches to wait inside their transactions")
    finally:
        holder.execute(sa.text("select pg_advisory_unlock(:k)"), {"k": projection.CHANGE_FEED_LOCK})
        holder.close()
        for w in workers:
            w.join(30)
    assert sorted(changed) == [0, len(batch)]  # one applied the batch, the other found it applied
    with store.engine.connect() as conn:
        added = Counter(r[0] for r in conn.execute(sa.text("select event_id from timeline_changes "
                                                           "where kind = 'added'")))
        entries = conn.execute(sa.text("select count(*) from timeline_entries")).scalar_one()
    assert entries == 20 and len(added) == 20 and set(added.values()) == {1}
    assert projection.offsets(store) == {(TOPIC, 0): len(batch)}
    store.engine.dispose()
