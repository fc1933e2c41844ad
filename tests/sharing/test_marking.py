"""Single webhook deliveries are marked ``sending`` before their POSTs, the rows that ask together in one
transaction: each row is marked only if it is still claimed by this pass (not cancelled or closed since, not
claimed again by another deliverer), and a failure of the database reaches every POST waiting on it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from hub.db.schema import deliveries
from hub.db.store import Store
from hub.sharing import marking
from hub.sharing.marking import Marker

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CLAIM = NOW + timedelta(seconds=60)  # the claim the pass took the rows with
LEASE = timedelta(seconds=60)
DL = deliveries.c


@pytest.fixture
def store(db_url: str) -> Store:
    return Store.open(db_url)


def claimed(store: Store, n: int) -> list[dict[str, Any]]:
    rows = [{"delivery_id": f"d-{i}", "kind": "share", "decision_id": f"dec-{i}", "information_id": f"info-{i}",
             "information_version": 1, "recipient_key": "svc:7A6:Paediatrics", "recipient_kind": "agency_professional",
             "agency_id": "7A6", "child_id": "child-1", "household_id": "hh-1", "state": "queued", "payload": "{}",
             "created_at": NOW, "next_attempt_at": CLAIM} for i in range(n)]
    with store.engine.begin() as conn:
        conn.execute(deliveries.insert(), rows)
    return rows


def states(store: Store) -> dict[str, tuple[str, str | None]]:
    with store.engine.connect() as conn:
        return {r.delivery_id: (r.state, r.attempt_id) for r in conn.execute(
            sa.select(DL.delivery_id, DL.state, DL.attempt_id))}


def test_rows_asking_together_are_marked_in_one_transaction_and_only_while_still_claimed(store: Store) -> None:
    rows = claimed(store, 5)
    with store.engine.begin() as conn:  # since the claim: one cancelled, one claimed again by another deliverer
        conn.execute(deliveries.update().where(DL.delivery_id == "d-1").values(state="cancelled", closed_at=NOW))
        conn.execute(deliveries.update().where(DL.delivery_id == "d-3").values(next_attempt_at=CLAIM + LEASE))

    async def go() -> tuple[list[bool], int]:
        marker = Marker(store, NOW, lease=LEASE, claimable=("queued", "in_doubt"))
        got = await asyncio.gather(*(marker.mark(r, f"a-{r['delivery_id']}") for r in rows))
        return list(got), marker.transactions

    got, transactions = asyncio.run(go())
    assert got == [True, False, True, False, True]
    assert transactions == 1
    after = states(store)
    assert {d: s for d, s in after.items() if s[0] == "sending"} == {
        "d-0": ("sending", "a-d-0"), "d-2": ("sending", "a-d-2"), "d-4": ("sending", "a-d-4")}
    assert after["d-1"] == ("cancelled", None) and after["d-3"] == ("queued", None)


def test_a_failure_of_the_database_reaches_every_post_waiting_and_marks_nothing(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = claimed(store, 3)

    def broken(*args: Any, **kwargs: Any) -> set[str]:
        raise sa.exc.OperationalError("UPDATE deliveries", {}, Exception("database is locked"))

    monkeypatch.setattr(marking, "mark_many", broken)

    async def go() -> list[object]:
        marker = Marker(store, NOW, lease=LEASE, claimable=("queued",))
        return await asyncio.gather(*(marker.mark(r, "a") for r in rows), return_exceptions=True)

    assert all(isinstance(g, sa.exc.OperationalError) for g in asyncio.run(go()))
    assert all(s == ("queued", None) for s in states(store).values())


def test_a_row_asking_while_a_wave_is_being_marked_goes_in_the_next(store: Store) -> None:
    rows = claimed(store, 4)

    async def go() -> tuple[list[bool], int]:
        marker = Marker(store, NOW, lease=LEASE, claimable=("queued",))
        first = asyncio.gather(*(marker.mark(r, "a") for r in rows[:2]))
        while len(marker._waiting) < 2:  # both have asked ...
            await asyncio.sleep(0)
        while marker._waiting:  # ... and their wave is taken: these two wait for the next
            await asyncio.sleep(0)
        later = asyncio.gather(*(marker.mark(r, "b") for r in rows[2:]))
        return [*await first, *await later], marker.transactions

    got, transactions = asyncio.run(go())
    assert got == [True] * 4 and transactions == 2
