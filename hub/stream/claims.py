"""One batch per ingest partition at a time, across every worker: the claim a batch's transaction takes first.

Several workers in one consumer group split the ingest partitions, but while the group rebalances a
partition can be fetched by its old owner and its new one at once (Kafka's committed offset lags the
database's, so both may hold the same records). Projections are idempotent only when batches of a
partition commit one after the other: two transactions that both read "no such entry yet" would both
announce it as ``added`` in the change feed. So, on PostgreSQL, a batch's transaction first takes a
transaction-scoped advisory lock per partition it holds records of, in ascending order (no deadlock
between two workers), and then reads the offsets the database has recorded for them: records below the
stored next offset were applied by another worker meanwhile and are left out.

The lock is keyed by the partition number across the ingest topics: they share the key (the subject
pseudonym) and the partition count (:mod:`hub.kafka.topics`), so a subject's records are in the same
partition of every ingest topic, and one lock covers all of them: a link and an entry of one subject
arriving on two topics are never applied side by side either. SQLite has one writer at a time already
(:func:`hub.db.erasure_guard.hold_shared` begins the write); the stored offsets are re-checked there too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.db.schema import stream_offsets

O = stream_offsets.c  # noqa: E741
#: the first key of the two-key advisory lock of an ingest partition (the second is the partition number)
PARTITION_LOCK_CLASS = 0x68756250  # "hubP"

R = TypeVar("R")


def lock_partitions(conn: Connection, partitions: Sequence[int]) -> None:
    """Hold the transaction lock of each partition (ascending) until the transaction ends (PostgreSQL)."""
    if conn.dialect.name != "postgresql" or not partitions:
        return
    conn.execute(sa.text("select pg_advisory_xact_lock(:c, p) from unnest(cast(:ps as int[])) as p order by p"),
                 {"c": PARTITION_LOCK_CLASS, "ps": sorted(set(partitions))})


def stored(conn: Connection, offsets: Mapping[tuple[str, int], int]) -> dict[tuple[str, int], int]:
    """The next offset the database holds for each (topic, partition) of ``offsets`` that has one."""
    topics = sorted({t for t, _ in offsets})
    rows = conn.execute(sa.select(O.topic, O.partition, O.next_offset).where(O.topic.in_(topics)))
    return {(r.topic, r.partition): r.next_offset for r in rows if (r.topic, r.partition) in offsets}


def claim(conn: Connection, rows: list[R], positions: Sequence[tuple[str, int, int]] | None,
          offsets: Mapping[tuple[str, int], int]) -> tuple[list[R], dict[tuple[str, int], int]]:
    """Lock the batch's partitions, then (``rows`` aligned with their ``positions``, (topic, partition,
    offset) each) the rows not applied yet and the offsets that still move forward."""
    lock_partitions(conn, [p for _, p in offsets])
    have = stored(conn, offsets)
    ahead = {tp: n for tp, n in offsets.items() if n > have.get(tp, -1)}
    if positions is None:
        return rows, ahead
    if len(positions) != len(rows):
        raise ValueError("one position per row")
    keep = [row for row, (t, p, o) in zip(rows, positions, strict=True) if o >= have.get((t, p), 0)]
    return keep, ahead
