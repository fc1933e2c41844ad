"""Children whose sharing pass failed: skipped so the follower moves on, recorded and retried.

One child's failure — a row its plan cannot write, a record the engine cannot read — must never
hold the change feed up for every other family (withdrawals among them). The sharing step then
decides each child in a savepoint of its own (:mod:`hub.sharing.processor`); a child that fails is
rolled back alone, recorded here (``sharing_failures``: the error's class and first line, never an
identifier), its coordinator is alerted once, and the follower retries it with backoff until a
pass succeeds, which clears the row.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.db.schema import sharing_failures
from hub.db.store import Store
from hub.sharing.alerts import coordinator_of, raise_alert

F = sharing_failures.c
FIRST_RETRY = timedelta(seconds=2)
LONGEST_WAIT = timedelta(hours=1)


def backoff(attempts: int) -> timedelta:
    return min(FIRST_RETRY * (2 ** max(attempts - 1, 0)), LONGEST_WAIT)


def describe(exc: BaseException) -> str:
    """The error's class and the first line of its message (SQL errors name columns, not values)."""
    first = (str(exc).splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {first}"


def record(conn: Connection, household_id: str, child_id: str, exc: BaseException, now: datetime) -> None:
    """Note the child's failed pass (in the pass's transaction) and when to try again."""
    row = conn.execute(sa.select(F.attempts, F.first_failed_at).where(F.child_id == child_id)).first()
    attempts = (row.attempts if row else 0) + 1
    values = dict(household_id=household_id, error=describe(exc), attempts=attempts, retry_at=now + backoff(attempts))
    if row is None:
        conn.execute(sharing_failures.insert().values(child_id=child_id, first_failed_at=now, **values))
    else:
        conn.execute(sharing_failures.update().where(F.child_id == child_id).values(**values))
    agency, service = coordinator_of(conn, child_id)
    raise_alert(conn, key=f"sharing_failed:{child_id}:{(row.first_failed_at if row else now).isoformat()}",
                kind="sharing_failed", household_id=household_id, child_id=child_id, to_agency_id=agency,
                to_service=service, now=now, details={"error": type(exc).__name__},
                message="Sharing decisions for this child could not be made; they are retried automatically. "
                        "Other families are not affected.")


def clear(conn: Connection, children: Iterable[str]) -> None:
    """Forget the failures of children whose pass succeeded."""
    ids = sorted(set(children))
    for i in range(0, len(ids), 500):
        conn.execute(sharing_failures.delete().where(F.child_id.in_(ids[i:i + 500])))


def due(store: Store, now: datetime, limit: int = 100) -> list[tuple[str, str]]:
    """(household, child) of failed children due for another try."""
    with store.engine.connect() as conn:
        return [(r.household_id, r.child_id) for r in conn.execute(
            sa.select(F.household_id, F.child_id).where(F.retry_at <= now).order_by(F.retry_at).limit(limit))]


def failed(store: Store) -> list[dict[str, object]]:
    """Every child waiting for a retry (for operators and tests)."""
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(sharing_failures).order_by(F.first_failed_at))]
