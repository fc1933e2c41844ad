"""The coordination sweep settles households by the hundred (hub.sharing.alert_sync, coordination.sweep_households):
read in a few queries, compared in memory, written only where an alert differs. Settling them together must
leave exactly the alerts and change-feed rows that settling each alone leaves, and what a sweep asks the
database must not grow with the households it reads."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bench.population import Population
from hub.db.schema import alerts, timeline_changes
from hub.db.store import Store
from hub.sharing import coordination
from hub.sharing.alerts import raise_alert
from hub.stream import readmodel
from tests.sharing.sharing_support import Feeder
from tests.sharing.test_sweep_scope import alert_rows, timed_events

STEP = 40


def feed_rows(store: Store) -> list[tuple[Any, ...]]:
    """The alert rows of the change feed, in feed order: kind, household, child and the alert's key."""
    C, A = timeline_changes.c, alerts.c
    q = (sa.select(C.kind, C.household_id, C.child_id, A.alert_key)
         .select_from(timeline_changes.join(alerts, C.event_id == sa.cast(A.alert_id, sa.String)))
         .where(C.kind.in_(("alert", "alert_resolved", "alert_corrected"))).order_by(C.seq))
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(q)]


def test_households_settled_together_or_one_at_a_time_leave_the_same_alerts_and_feed(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    together, alone = Store.open(db_url), Store.open(f"sqlite:///{tmp_path / 'alone.db'}")
    events = timed_events(10, seed=23)
    feeders = [Feeder(s, events[-1][0]) for s in (together, alone)]
    for i in range(0, len(events), STEP):  # late records correct alerts, new ones clear them, time raises more
        chunk = events[i:i + STEP]
        for feeder in feeders:
            feeder.feed([e for _, e in chunk], chunk[-1][0])
        monkeypatch.setattr(coordination, "CHUNK", 200)
        coordination.sweep(together)
        monkeypatch.setattr(coordination, "CHUNK", 1)
        coordination.sweep(alone)
        assert alert_rows(together) == alert_rows(alone), f"after event {i + len(chunk)}"
    kinds = {r[0] for r in feed_rows(together)}
    assert {"alert", "alert_resolved"} <= kinds, kinds  # the population raises and clears alerts
    assert len({r[1] for r in feed_rows(together)}) > 1  # in more than one household at a time
    assert feed_rows(together) == feed_rows(alone)


def test_a_sweep_asks_the_database_as_often_for_thirty_households_as_for_three(
        counted: tuple[Store, list[str]]) -> None:
    store, statements = counted
    pop = Population(30, 60, seed=29, prefix="sq")
    events = sorted((t for i in range(30) for t in pop.family_events(i)), key=lambda t: t[0])
    Feeder(store, events[-1][0]).feed([e for _, e in events], events[-1][0])
    with store.engine.connect() as conn:
        at = coordination.clock(conn)
    assert at is not None
    households = sorted(h.household_id for h in readmodel.households(store))
    assert len(households) == 30
    rules, clocks = coordination.ruleset(), coordination.statutory_clocks()
    raised, _ = coordination.sweep_households(store, households, at, rules, clocks)
    assert raised > 0  # the alerts are there, so the next sweeps compare each with its episode

    asked = {}
    for n in (3, 30):  # nothing new: every episode is seen again with its alert as it should be
        statements.clear()
        assert coordination.sweep_households(store, households[:n], at, rules, clocks)[0] == 0
        asked[n] = len(statements)
    assert asked[30] == asked[3] <= 12, asked  # where each household was a few statements, each alert one more


def test_a_sweep_settles_each_household_with_its_own_alerts(db_url: str) -> None:
    """An alert no longer shown is resolved in its own household only, with its feed row there."""
    store = Store.open(db_url)
    pop = Population(6, 60, seed=31, prefix="sg")
    events = sorted((t for i in range(6) for t in pop.family_events(i)), key=lambda t: t[0])
    at: datetime = events[-1][0]
    Feeder(store, at).feed([e for _, e in events], at)
    coordination.sweep(store)
    households = sorted(h.household_id for h in readmodel.households(store))
    A = alerts.c
    # an open alert of a kind the rules raise, that no episode shows: in the last household only
    with store.engine.begin() as conn:
        assert raise_alert(conn, key="missed_appointments:nobody:1", kind="missed_appointments",
                           household_id=households[-1], child_id="nobody", to_agency_id=None, to_service=None,
                           message="2 appointments missed within 90 days", details={}, now=at)
    feed_before = len(feed_rows(store))
    coordination.sweep(store)
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(A.resolved_at, A.resolution).where(
            A.alert_key == "missed_appointments:nobody:1")).one()
    assert row.resolved_at is not None and row.resolution == coordination.alert_sync.GONE
    added = feed_rows(store)[feed_before:]
    assert added == [("alert_resolved", households[-1], "nobody", "missed_appointments:nobody:1")]
