"""A named lease on a ``stream_cursors`` row: one holder at a time, taken over when it lapses.

The sharing follower holds the row ``sharing`` (and keeps its position there); the chores of
sharing — the decisions' audit trail, escalation, the readiness sweep — run under ``sharing-chores``
so that however many deliverers or delivering workers run, one does them at a time.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from hub.db.schema import stream_cursors
from hub.db.store import Store, utcnow

S = stream_cursors.c
TTL = timedelta(seconds=15)
#: the lease under which the sharing chores run (audit trail, escalation, readiness sweep)
CHORES = "sharing-chores"


class Lease:
    """Take, renew and give up the lease ``name`` for ``owner``."""

    def __init__(self, store: Store, name: str, owner: str, ttl: timedelta = TTL) -> None:
        self.store = store
        self.name = name
        self.owner = owner
        self.ttl = ttl
        self.held = False

    def claim(self, now: datetime | None = None) -> int | None:
        """Take or renew the lease if it is free, lapsed or ours: the row's position, or None (held elsewhere)."""
        now = now or utcnow()
        with self.store.engine.begin() as conn:
            row = conn.execute(stream_cursors.update().where(
                S.name == self.name,
                sa.or_(S.owner == self.owner, S.owner.is_(None), S.lease_until < now)).values(
                owner=self.owner, lease_until=now + self.ttl, updated_at=now).returning(S.position)).first()
            if row is not None:
                self.held = True
                return int(row.position)
            exists = conn.execute(sa.select(S.name).where(S.name == self.name)).first() is not None
        if not exists:
            try:
                with self.store.engine.begin() as conn:
                    conn.execute(stream_cursors.insert().values(name=self.name, position=0, owner=self.owner,
                                                                lease_until=now + self.ttl, updated_at=now))
                self.held = True
                return 0
            except sa.exc.IntegrityError:
                pass  # another process created it first and holds it
        self.held = False
        return None

    def hold(self, now: datetime | None = None) -> bool:
        """Take or renew the lease; True while this owner holds it."""
        return self.claim(now) is not None

    def renew(self, now: datetime | None = None) -> bool:
        """Extend the lease if this owner still holds it (never takes it over): True if it did."""
        now = now or utcnow()
        with self.store.engine.begin() as conn:
            n = conn.execute(stream_cursors.update().where(S.name == self.name, S.owner == self.owner).values(
                lease_until=now + self.ttl, updated_at=now)).rowcount
        self.held = n == 1
        return self.held

    def keeping(self) -> contextlib.AbstractContextManager[None]:
        """Renew the lease (every third of its time to live) while the block runs: :func:`kept`."""
        return kept(self, utcnow(), self.ttl.total_seconds() / 3, wait=False)

    def release(self) -> None:
        """Give the lease up (on a clean stop) so another process can take over at once."""
        with self.store.engine.begin() as conn:
            conn.execute(stream_cursors.update().where(S.name == self.name, S.owner == self.owner).values(
                owner=None, lease_until=None))
        self.held = False


@contextmanager
def kept(lease: Lease, since: datetime, every: float, *, wait: bool = True) -> Iterator[None]:
    """Renew ``lease`` every ``every`` seconds (in a thread) while the block runs: a long pass keeps it.

    ``since`` is the time the block's work started in the holder's clock (renewals add the time elapsed
    since); renewing stops when the lease was lost or the block ends. A renewal the database refuses for
    a moment is tried again at the next beat. ``wait`` false: the block's end does not wait for a renewal
    in flight (an event loop must not block on the database; a late renewal only extends a lease this
    owner holds, and does nothing once it was released).
    """
    stop = threading.Event()
    started = time.monotonic()

    def beat() -> None:
        while not stop.wait(every):
            try:
                if not lease.renew(since + timedelta(seconds=time.monotonic() - started)):
                    return
            except SQLAlchemyError:
                continue

    renewer = threading.Thread(target=beat, name=f"lease-{lease.name}", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        if wait:
            renewer.join()
