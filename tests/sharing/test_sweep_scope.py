"""Alert sweeps over the households with something new or due (hub.sharing.sweep_scope): at every step of a
year of a synthetic population's events (and of the seed journeys), the readiness and coordination sweeps that
read only the households their scope plans leave exactly the alerts that sweeping every household leaves,
while reading far fewer households. Between steps the clocks move by weeks, so alerts that only time raises
or clears (an appointment coming within the warning, a referral unanswered for six weeks, a report falling
due) are part of what must agree."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bench.bench_outcome import consents
from bench.population import END, Population
from hub.core.events import InboundEvent
from hub.db.schema import alerts, disclosure_releases, timeline_changes
from hub.db.sealed import sealer
from hub.db.store import Store, as_utc, utcnow
from hub.demo import scenario
from hub.demo.journey import ABUHB_PAEDS, CAV_SLT, report_not_sent_journey
from hub.sharing import coordination, delivery, readiness
from hub.sharing.alerts import list_alerts, opened
from hub.sharing.sweep_scope import Looked, Plan, SweepScope
from hub.stream import readmodel
from tests.sharing.sharing_support import Feeder, Webhook, deliver

CHUNK = 20


def timed_events(families: int, seed: int) -> list[tuple[datetime, InboundEvent]]:
    pop = Population(families, 70, seed=seed, prefix="sw")
    out = [t for i in range(families) for t in pop.family_events(i)] + consents(pop, random.Random(seed))
    return [t for _, t in sorted(((a, n), (a, e)) for n, (a, e) in enumerate(out))]


def alert_rows(store: Store) -> list[tuple[Any, ...]]:
    """Every alert as a coordinator reads it: key, kind, household, message, raised, resolved and why."""
    with store.engine.connect() as conn:
        rows = [opened(sealer(store), dict(r._mapping)) for r in conn.execute(sa.select(alerts))]
    return sorted((r["alert_key"], r["kind"], r["household_id"], r["message"], as_utc(r["created_at"]),
                   as_utc(r["resolved_at"]) if r["resolved_at"] else None, r["resolution"]) for r in rows)


class Counting(SweepScope):
    """A scope that counts the households its plans name (every household when it plans them all)."""

    def __init__(self, store: Store) -> None:
        super().__init__(full_every=float("inf"))
        self.store, self.read = store, 0

    def plan(self, conn: sa.Connection, now: datetime, basis: object = None) -> Plan:
        plan = super().plan(conn, now, basis)
        self.read += len(plan.households) if plan.households is not None else len(readmodel.households(self.store))
        return plan


class Pair:
    """Two stores fed the same events: one swept whole, one through scopes."""

    def __init__(self, tmp: Path) -> None:
        self.whole = Store.open(f"sqlite:///{tmp / 'whole.db'}")
        self.scoped = Store.open(f"sqlite:///{tmp / 'scoped.db'}")
        self.feeders = [Feeder(s, END) for s in (self.whole, self.scoped)]
        self.ready, self.coord = Counting(self.scoped), Counting(self.scoped)
        self.households = 0

    def feed(self, events: list[InboundEvent], at: datetime) -> None:
        for f in self.feeders:
            f.feed(events, at)

    def sweep(self, at: datetime, coordination_at: datetime | None = None) -> None:
        raised = (readiness.sweep(self.whole, at), readiness.sweep(self.scoped, at, scope=self.ready),
                  coordination.sweep(self.whole, coordination_at), coordination.sweep(self.scoped, coordination_at,
                                                                                    scope=self.coord))
        assert raised[0] == raised[1] and raised[2] == raised[3], raised
        assert alert_rows(self.scoped) == alert_rows(self.whole), f"the sweeps at {at} disagree"
        self.households += len(readmodel.households(self.whole))


@pytest.mark.parametrize("seed", [21])
def test_scoped_sweeps_leave_the_alerts_sweeping_every_household_leaves(tmp_path: Path, seed: int) -> None:
    events = timed_events(8, seed)
    pair = Pair(tmp_path)
    for i in range(0, len(events), CHUNK):
        chunk = events[i:i + CHUNK]
        at = chunk[-1][0]
        pair.feed([e for _, e in chunk], at)
        if i % (3 * CHUNK) == 0:  # shares change state between sweeps, with no change in the feed
            for store in (pair.whole, pair.scoped):
                deliver(store, at)
        for days in (0, 2, 5):  # the wall clock moves on with nothing new
            pair.sweep(at + timedelta(days=days))
    later = END + timedelta(days=40)  # appointments pass, reports fall overdue, with nothing new at all
    pair.sweep(later, later)
    whole = alert_rows(pair.whole)
    assert "readiness" in {r[1] for r in whole}, "the population should raise readiness alerts"
    assert len({r[1] for r in whole} & set(coordination.CHILD_KINDS)) >= 2, "and coordination alerts of kinds"
    assert any(r[5] is not None for r in whole) and any(r[5] is None for r in whole)  # resolved and open
    # and they read a fraction of the households (readiness reads every household with an appointment within
    # the week, most of this population; its families change every few weeks; in a
    # deployment most households are quiet in any minute, and the fraction is smaller still)
    assert pair.ready.read < 0.7 * pair.households and pair.coord.read < 0.4 * pair.households, (
        pair.ready.read, pair.coord.read, pair.households)


def test_scoped_coordination_sweeps_over_the_seed_journeys_in_small_batches(tmp_path: Path) -> None:
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    pair = Pair(tmp_path)
    pair.feeders = [Feeder(s, now) for s in (pair.whole, pair.scoped)]
    events = sorted(scenario.build(now).events, key=lambda e: e.occurred_at)
    for i in range(0, len(events), 7):
        pair.feed(events[i:i + 7], now)
        pair.sweep(now)
    j = report_not_sent_journey(now, seed=905, child_id="c-905", household_id="hh-905")
    assessed = InboundEvent(record_type="AssessmentCompleted", sector="health", source_system="cav-wcp",
                            source_id="cav-slt-assess-again-905", occurred_at=now, subject=j.subject,
                            body={"service": CAV_SLT, "assessment_kind": "Communication review"})
    pair.feed([*j.before_consent, assessed], now + timedelta(days=1))  # its report is owed within 28 days
    pair.sweep(now + timedelta(days=1))
    assert "report_request" not in {r[1] for r in alert_rows(pair.whole)}
    pair.sweep(now + timedelta(days=40), now + timedelta(days=40))  # and overdue, with nothing new
    kinds = {r[1] for r in alert_rows(pair.whole)}
    assert {"statutory_clock", "report_request", "readiness", "referral_unanswered"} <= kinds, kinds


def test_a_scope_reads_every_household_first_then_the_changed_the_due_and_the_active(db_url: str) -> None:
    store = Store.open(db_url)
    tick = [0.0]
    scope = SweepScope(full_every=3600, stale_after=100, clock=lambda: tick[0])
    at = datetime(2026, 5, 1, tzinfo=UTC)

    def add(household: str, kind: str = "added") -> None:
        with store.engine.begin() as conn:
            conn.execute(timeline_changes.insert().values(household_id=household, child_id=f"{household}-c1",
                                                          event_id="e", kind=kind, at=at))

    add("hh-a")
    with store.engine.connect() as conn:
        first = scope.plan(conn, at)
    assert first.households is None  # nothing known yet: every household
    scope.done(first, [("hh-a", Looked()), ("hh-b", Looked(wake_at=at + timedelta(days=3))),
                       ("hh-c", Looked(active=True))])
    add("hh-d")
    add("hh-a", "alert")  # the sweeps' own alerts in the feed do not call for another look
    tick[0] = 60
    with store.engine.connect() as conn:
        assert scope.plan(conn, at).households == ["hh-c", "hh-d"]
        assert scope.plan(conn, at + timedelta(days=3)).households == ["hh-b", "hh-c", "hh-d"]
    tick[0] = 200  # no sweep for longer than stale_after: another process may have held the lease
    with store.engine.connect() as conn:
        full = scope.plan(conn, at)
    assert full.households is None
    scope.done(full, [(hh, Looked()) for hh in ("hh-a", "hh-b", "hh-c", "hh-d")])
    tick[0] = 250
    with store.engine.connect() as conn:
        assert scope.plan(conn, at).households == []  # nothing changed, due or active
    with store.engine.begin() as conn:  # a disclosure hold released: the coordinator may now be told of it
        conn.execute(disclosure_releases.insert().values(event_id="e-held", household_id="hh-e", child_id="hh-e-c1",
                                                         released_by="sw-1", released_role="social_worker",
                                                         released_at=utcnow()))
    with store.engine.connect() as conn:
        assert scope.plan(conn, at).households == ["hh-e"]
        assert scope.plan(conn, at - timedelta(days=1)).households is None  # a clock gone back: every household
        assert scope.plan(conn, at, "other rules").households is None  # judged by other rules: every household
    tick[0] = 3700
    with store.engine.connect() as conn:
        assert scope.plan(conn, at).households is None  # the hourly backstop


def test_a_household_with_an_appointment_this_week_is_read_again_when_a_share_fails_with_nothing_new(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed delivery changes what the clinician will see, and the change feed does not carry it: the
    household is read every sweep while its appointment is within the warning."""
    monkeypatch.setenv("HUB_SHARING_MAX_ATTEMPTS", "1")
    store = Store.open(db_url)
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    j = report_not_sent_journey(now, seed=907, child_id="c-907", household_id="hh-907")
    Feeder(store, now).feed(j.before_consent + j.consent, now)
    scope = SweepScope()
    assert readiness.sweep(store, now, scope=scope) == 0  # shared and on its way: nothing to raise
    hook = Webhook(status=503)
    try:
        delivery.set_webhook(store, ABUHB_PAEDS["agency_id"], hook.url, "a-shared-secret")
        assert deliver(store, now + timedelta(seconds=1)).failed == 2
    finally:
        hook.close()
    assert readiness.sweep(store, now + timedelta(minutes=5), scope=scope) == 1
    (alert,) = list_alerts(store, household_id="hh-907", kind="readiness")
    assert "2 report(s) withheld" in alert["message"] and "check" in alert["message"]
    assert readiness.sweep(store, now + timedelta(minutes=10)) == 0  # a sweep of every household finds no more
