"""The sharing step as a follower of the timeline's change feed.

The stream worker only projects: every change a family can see (an entry added or updated, a
subject's entries joining or leaving a child) lands in ``timeline_changes`` (:mod:`hub.projection`).
The sharing step reads that feed from its own cursor (the ``stream_cursors`` row ``sharing``),
decides for the children the changes touch (:func:`hub.sharing.processor.process_changes`) and moves
the cursor in the same transaction as its decisions. So:

* timeline freshness never waits for consent decisions;
* a burst of changes is decided child by child in one pass: each touched child's record is read once
  however many of its entries changed;
* a crash repeats at most the pass in hand, and passes are idempotent;
* one child whose pass fails is skipped and retried later (:mod:`hub.sharing.failures`): the cursor
  moves on for every other family.

One process at a time holds the cursor, under a lease (owner, lease_until) renewed while it works:
every ``RENEW_EVERY`` of the lease during a pass (:func:`hub.db.lease.kept`), so a pass longer than the
lease is not taken over and rolled back. With several workers the others stay idle and take over within
``LEASE`` when the holder dies (at once when it stops cleanly and releases the lease).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.core.errors import LeaseLost
from hub.core.settings import sharing_settings
from hub.db.lease import Lease, kept
from hub.db.schema import stream_cursors, timeline_changes, timeline_entries
from hub.db.store import Store, utcnow
from hub.sharing import failures
from hub.sharing.processor import Change, SharingResult, process_changes
from hub.sharing.record_memo import RecordMemo

CURSOR = "sharing"
LEASE = timedelta(seconds=15)
BATCH = 5000
#: the share of the lease after which a pass in hand renews it (5 s of 15)
RENEW_EVERY = 1 / 3
S = stream_cursors.c
C = timeline_changes.c
T = timeline_entries.c


@dataclass
class Pass:
    """What one pass did: ``held`` False when another process holds the cursor."""

    held: bool
    read: int = 0
    position: int = 0
    more: bool = False  # the pass read a full batch: more may be waiting
    result: SharingResult = field(default_factory=SharingResult)


def read_feed(conn: Connection, after: int, limit: int = BATCH) -> tuple[list[Change], int, int]:
    """The next ``limit`` rows of the feed after ``after``: (the timeline changes among them, the last seq read,
    how many rows were read). Rows that are not timeline entries (alerts raised and resolved, for the live
    streams) are read past, so the cursor moves over them and the lag comes back to zero."""
    q = (sa.select(C.seq, C.household_id, C.child_id, C.event_id, C.kind, T.record_type, T.status)
         .select_from(timeline_changes.outerjoin(timeline_entries, T.event_id == C.event_id))
         .where(C.seq > after).order_by(C.seq).limit(limit))
    rows = conn.execute(q).all()
    changes = [Change(r.seq, r.household_id, r.child_id, r.event_id, r.kind, r.record_type, r.status)
               for r in rows if r.record_type is not None]
    return changes, (rows[-1].seq if rows else after), len(rows)


def read_changes(conn: Connection, after: int, limit: int = BATCH) -> list[Change]:
    """The timeline changes among the next ``limit`` rows of the feed after ``after``."""
    return read_feed(conn, after, limit)[0]


class Follower:
    """Follows the change feed for one process (``owner``); call :meth:`step` repeatedly."""

    def __init__(self, store: Store, owner: str, *, name: str = CURSOR, lease: timedelta = LEASE,
                 batch: int = BATCH, memo: RecordMemo | None = None) -> None:
        self.store = store
        self.owner = owner
        self.name = name
        self.lease = lease
        self.batch = batch
        self._position = 0
        self._held_until: datetime | None = None
        self._lease = Lease(store, name, owner, lease)
        #: records opened by earlier passes (:mod:`hub.sharing.record_memo`): kept while this process holds the cursor
        self.memo = memo if memo is not None else RecordMemo(sharing_settings().memo_records)

    def step(self, now: datetime | None = None) -> Pass:
        """Claim or renew the lease when due, then decide for the next run of changes."""
        now = now or utcnow()
        if not self._holds(now):
            return Pass(held=False)
        with self.store.engine.connect() as conn:
            changes, last, n = read_feed(conn, self._position, self.batch)
        retry = failures.due(self.store, now)  # children whose earlier pass failed
        if not n and not retry:
            return Pass(held=True, position=last)

        started = time.monotonic()
        at = now

        def advance(conn: Connection) -> None:
            nonlocal at
            at = now + timedelta(seconds=time.monotonic() - started)  # the lease runs from the pass's end
            updated = conn.execute(stream_cursors.update().where(S.name == self.name, S.owner == self.owner).values(
                position=last, lease_until=at + self.lease, updated_at=at)).rowcount
            if updated != 1:
                raise LeaseLost("the sharing cursor was taken over by another process")

        try:
            with kept(self._lease, now, self.lease.total_seconds() * RENEW_EVERY):
                result = process_changes(self.store, changes, now=now, finish=advance, retry=retry, memo=self.memo,
                                         read_to=last)
        except LeaseLost:
            self._lost()
            return Pass(held=False)
        self._position, self._held_until = last, at + self.lease
        return Pass(held=True, read=len(changes), position=last, more=n >= self.batch, result=result)

    def _holds(self, now: datetime) -> bool:
        if self._held_until is not None and now < self._held_until - self.lease / 2:
            return True
        position = self._claim(now)
        if position is None:
            self._lost()
            return False
        self._position, self._held_until = position, now + self.lease
        return True

    def _lost(self) -> None:
        """Another process holds the cursor: what this one kept of children's records is let go."""
        self._held_until = None
        self.memo.clear()

    def _claim(self, now: datetime) -> int | None:
        return self._lease.claim(now)

    def release(self) -> None:
        """Give the lease up (on a clean stop) so another process can take over at once."""
        if self._held_until is None:
            return
        self._lease.release()
        self._lost()


def lag(store: Store, name: str = CURSOR) -> tuple[int, int]:
    """(position, newest change seq): how far the sharing step is behind the change feed."""
    with store.engine.connect() as conn:
        pos = conn.execute(sa.select(S.position).where(S.name == name)).scalar()
        newest = conn.execute(sa.select(sa.func.max(C.seq))).scalar()
    return int(pos or 0), int(newest or 0)

