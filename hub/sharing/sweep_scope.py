"""Which households a periodic alert sweep must read, so that a sweep costs what changed rather than the
whole population.

A sweep (:func:`hub.sharing.readiness.sweep`, :func:`hub.sharing.coordination.sweep`) reads a household's
records and makes its alerts agree with them at the sweep's clock. For a household whose records have not
changed, the answer changes only when the clock reaches a time the household itself names: an appointment
coming within the warning, a report falling due, an event-time rule's episode beginning or ending. So after
reading a household, the sweep says when it next needs a look without any change (its *wake* time; ``None``:
never) and whether it must be read every time regardless (*active*: for readiness, a household whose
alerts depend on the state of its shares and deliveries, which the change feed does not carry).

:class:`SweepScope` keeps, in the process that runs the sweep, the change feed's position read before the
last sweep and each household's wake time and activity; the next sweep reads only the households with a
change in the feed since (other than the alerts the sweeps themselves put there), those whose wake time has
come, and the active ones. Its first sweep, one after a pause longer than ``stale_after`` (the lease went to
another process, which may have swept meanwhile), one whose clock is behind the last (the event-time clock's
latest record was erased or corrected), one under other rules (``HUB_ALERT_RULES_FILE`` changed) and one
every ``full_every`` seconds read every household:
a backstop for what reaches a household's alerts without a change in the feed (an enrolment edit), at a
bounded delay. A disclosure hold released (which shows the coordinator a record the rules had skipped) is
read from its own table.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa

from hub.db.schema import disclosure_releases, timeline_changes
from hub.db.store import utcnow
from hub.governance.alert_retention import FEED_KINDS

C = timeline_changes.c
R = disclosure_releases.c
#: seconds between sweeps of every household (the backstop)
FULL_EVERY = 3600.0
#: how far before the last sweep's start a disclosure release still counts as new (a release's transaction
#: may commit after the sweep read, stamped before it)
RELEASE_MARGIN = timedelta(minutes=5)


@dataclass(frozen=True)
class Looked:
    """What reading one household told the scope: when it next needs a look without a change (``None``:
    not by time), and whether every sweep must read it."""
    wake_at: datetime | None = None
    active: bool = False


@dataclass(frozen=True)
class Plan:
    """One sweep's households (``None``: every household), the feed position read before its records, the
    sweep's clock, what it judges by besides the records, and the wall time it was made."""
    households: list[str] | None
    position: int
    now: datetime
    basis: object
    wall: datetime


@dataclass
class SweepScope:
    full_every: float = FULL_EVERY
    stale_after: float | None = None
    clock: Callable[[], float] = time.monotonic
    last: Plan | None = None  # the plan of the last sweep done
    wake: dict[str, datetime] = field(default_factory=dict)
    active: set[str] = field(default_factory=set)
    last_full: float = float("-inf")
    last_done: float = float("-inf")

    def plan(self, conn: sa.Connection, now: datetime, basis: object = None) -> Plan:
        """The households to read at the sweep's clock ``now``; the feed position is read first, so a change
        that lands while the sweep reads is looked at again next time. ``basis``: what the sweep judges by
        besides the records (the rule set); when it differs from the last sweep's, every household."""
        top = conn.execute(sa.select(sa.func.max(C.seq))).scalar() or 0
        wall = utcnow()
        tick = self.clock()
        last = self.last
        stale = self.stale_after is not None and tick - self.last_done > self.stale_after
        if (last is None or stale or now < last.now  # a clock gone back: the latest record was erased or moved
                or basis != last.basis or tick - self.last_full >= self.full_every):
            return Plan(None, top, now, basis, wall)
        changed = set(conn.execute(sa.select(C.household_id).distinct().where(
            C.seq > last.position, C.seq <= top, C.kind.not_in(FEED_KINDS))).scalars())
        # a hold released shows the coordinator a record the rules skipped
        changed |= set(conn.execute(sa.select(R.household_id).distinct().where(
            R.released_at >= last.wall - RELEASE_MARGIN)).scalars())
        due = {hh for hh, at in self.wake.items() if at <= now}
        return Plan(sorted(changed | due | self.active), top, now, basis, wall)

    def done(self, plan: Plan, looked: Iterable[tuple[str, Looked]]) -> None:
        """Take in what the sweep of ``plan`` found; a household it did not read keeps what it had."""
        tick = self.clock()
        if plan.households is None:
            self.wake.clear()
            self.active.clear()
            self.last_full = tick
        for hh, seen in looked:
            if seen.wake_at is None:
                self.wake.pop(hh, None)
            else:
                self.wake[hh] = seen.wake_at
            if seen.active:
                self.active.add(hh)
            else:
                self.active.discard(hh)
        self.last = plan
        self.last_done = tick
