"""Marking single webhook deliveries ``sending`` before their POSTs, with the rows that ask together in one
transaction (a group commit).

Each delivery's ``sending`` mark is committed before its POST (:mod:`hub.sharing.delivery`: if the deliverer
dies mid-POST the row is found ``sending`` past its claim and becomes ``in_doubt``, sent again and deduped by
the receiver). One transaction a row made every POST wait for the database's write lock on its own, behind
the stream worker's writes on SQLite; here the rows whose POSTs are about to start (up to the pass's
concurrency) are marked in one transaction, each by the same conditional update as before (still claimed by
this pass, not closed or cancelled since), and each POST still waits for its own row's commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from hub.db.schema import deliveries
from hub.db.store import Store

DL = deliveries.c
Row = dict[str, Any]


def still_claimed(ids: Sequence[str], claimed: datetime, attempt_id: str, now: datetime, *, until: datetime,
                  claimable: Sequence[str]) -> sa.Update:
    """Mark ``sending`` (this attempt, claim ``until``) the rows of ``ids`` still as this pass claimed them: in a
    claimable state, not closed, and their claim (``next_attempt_at``) not moved by anyone since."""
    return deliveries.update().where(
        DL.delivery_id.in_(ids), DL.state.in_(claimable), DL.closed_at.is_(None),
        DL.next_attempt_at == claimed).values(state="sending", attempt_id=attempt_id, sending_at=now,
                                              next_attempt_at=until)


def mark_many(store: Store, rows: Sequence[tuple[Row, str]], now: datetime, *, lease: timedelta,
              claimable: Sequence[str]) -> set[str]:
    """Mark each (row, attempt id) ``sending`` in one transaction; the ids still ours to send."""
    ours: set[str] = set()
    with store.engine.begin() as conn:
        for row, attempt_id in rows:
            if conn.execute(still_claimed([row["delivery_id"]], row["next_attempt_at"], attempt_id, now,
                                          until=now + lease, claimable=claimable)).rowcount:
                ours.add(row["delivery_id"])
    return ours


class Marker:
    """One delivery pass's marks: :meth:`mark` answers once the row's mark is committed (True: send it)."""

    def __init__(self, store: Store, now: datetime, *, lease: timedelta, claimable: Sequence[str]) -> None:
        self.store, self.now, self.lease, self.claimable = store, now, lease, tuple(claimable)
        self._waiting: list[tuple[Row, str, asyncio.Future[bool]]] = []
        self._draining: asyncio.Task[None] | None = None
        self.transactions = 0

    async def mark(self, row: Row, attempt_id: str) -> bool:
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((row, attempt_id, done))
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain())
        return await done

    async def _drain(self) -> None:
        while self._waiting:
            wave, self._waiting = self._waiting, []
            self.transactions += 1
            try:
                ours = await asyncio.to_thread(mark_many, self.store, [(r, a) for r, a, _ in wave], self.now,
                                               lease=self.lease, claimable=self.claimable)
            except Exception as exc:  # the database: every POST of the wave waits on it, none is sent
                for _r, _a, done in wave:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for r, _a, done in wave:
                if not done.done():
                    done.set_result(r["delivery_id"] in ours)
