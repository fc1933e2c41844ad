"""Keeps erased subjects out of the projections, whatever arrives later.

Table ``erased_subjects``: subject pseudonym → when it was erased (and by which erasure). A decoded
record of an erased subject that was *received before the erasure* is never projected: a copy
redelivered by Kafka, a value opened with a data key another process still had in its cache, a
plaintext record written before sealing existed, a replay. Records received after the erasure are
new information (an agency sending again) and are projected as usual.

The check runs inside the projection's transaction, and an erasure's purge holds the opposite
lock, so the two never interleave: on PostgreSQL a shared / exclusive transaction advisory lock,
on SQLite the database write lock (``BEGIN IMMEDIATE``) taken before the check.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.db.schema import erased_subjects
from hub.db.store import as_utc

E = erased_subjects.c
#: pg_advisory_xact_lock key shared by projections and taken exclusively by an erasure ("erase").
PG_ERASURE_LOCK = 0x6572617365
_IN_CHUNK = 2000


def _begin_write(conn: Connection) -> None:
    """SQLite: take the write lock now, so what is read next cannot change before the commit."""
    if conn.dialect.name == "sqlite" and not conn.connection.dbapi_connection.in_transaction:  # type: ignore[union-attr]
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def hold_shared(conn: Connection) -> None:
    """Called first in a projection's transaction: no erasure commits until it does."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("select pg_advisory_xact_lock_shared(:k)"), {"k": PG_ERASURE_LOCK})
    else:
        _begin_write(conn)


def hold_exclusive(conn: Connection) -> None:
    """Called first in an erasure's transaction: waits for projections in flight, holds back new ones."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("select pg_advisory_xact_lock(:k)"), {"k": PG_ERASURE_LOCK})
    else:
        _begin_write(conn)


def erased_among(conn: Connection, subjects: Iterable[str]) -> dict[str, datetime]:
    wanted = sorted(set(subjects))
    found: dict[str, datetime] = {}
    for i in range(0, len(wanted), _IN_CHUNK):
        found.update((r.subject, as_utc(r.erased_at)) for r in conn.execute(
            sa.select(E.subject, E.erased_at).where(E.subject.in_(wanted[i:i + _IN_CHUNK]))))
    return found


def _received(record: dict[str, Any]) -> datetime | None:
    value = record["meta"].get("received_at")
    return as_utc(value) if isinstance(value, datetime) else None


def unerased(conn: Connection, decoded: Sequence[tuple[str, str, dict[str, Any]]]
             ) -> list[tuple[str, str, dict[str, Any]]]:
    """``decoded`` without the records of erased subjects received before their erasure (one query)."""
    if not decoded:
        return []
    erased = erased_among(conn, {r[2]["meta"]["subject"] for r in decoded})
    if not erased:
        return list(decoded)
    kept = []
    for item in decoded:
        at = erased.get(item[2]["meta"]["subject"])
        received = _received(item[2])
        if at is None or (received is not None and received > at):
            kept.append(item)
    return kept
