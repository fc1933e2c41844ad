"""Writes decoded records into the database projections, idempotently and in any order.

Used by the stream worker for live events and by ``hub replay`` for rebuilding; both hand it
batches of decoded records. Timeline entries: highest source version wins. Identity links: the
link event with the highest (occurred_at, version) for a subject wins. Every change a family can
see — an entry added or updated, a subject's entries joining or leaving a household — is appended
to ``timeline_changes``, the feed behind the live streams and the sharing step. Records of erased
subjects are left out (:mod:`hub.erasure_guard`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from hub.db import erasure_guard
from hub.db.schema import identity_links, stream_offsets, timeline_changes, timeline_entries
from hub.db.sealed import Sealer, sealer
from hub.db.store import Store, as_utc, utcnow
from hub.stream import claims
from hub.stream.timeline import entry_row, link_row

T = timeline_entries.c
L = identity_links.c
O = stream_offsets.c  # noqa: E741
_IN_CHUNK = 2000
#: columns a newer source version of an entry replaces (``late`` stays as the first version set it)
_ENTRY_UPDATE = [c.name for c in timeline_entries.c if c.name not in ("event_id", "late")]
_LINK_UPDATE = [c.name for c in identity_links.c if c.name != "subject"]

#: (is a link, row, subject, when the hub received it) for each decoded record, built outside the transaction
Built = list[tuple[bool, dict[str, Any], str, datetime | None]]


def build(decoded: Sequence[tuple[str, str, dict[str, Any]]]) -> Built:
    """The rows of a batch (pure: no database), one per decoded record, in the batch's order."""
    out: Built = []
    for record_type, ce_type, record in decoded:
        received = record["meta"].get("received_at")
        received = as_utc(received) if isinstance(received, datetime) else None
        if record_type == "IdentityLinked":
            row = link_row(record)
            out.append((True, row, row["subject"], received))
        else:
            row = entry_row(record_type, ce_type, record)
            out.append((False, row, row["subject"], received))
    return out


def _unerased(conn: Connection, built: Built) -> Built:
    """``built`` without the rows of erased subjects received before their erasure
    (:func:`hub.db.erasure_guard.unerased`'s rule, on built rows; one query)."""
    if not built:
        return []
    erased = erasure_guard.erased_among(conn, {b[2] for b in built})
    if not erased:
        return built
    return [b for b in built if (at := erased.get(b[2])) is None or (b[3] is not None and b[3] > at)]


def dedupe(built: Built) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(entry rows, link rows) of a batch: per event id the highest source version, per subject the link
    with the highest (occurred_at, source version); the first of equals wins."""
    entries: dict[str, dict[str, Any]] = {}
    links: dict[str, dict[str, Any]] = {}
    for is_link, row, subject, _ in built:
        if is_link:
            cur = links.get(subject)
            if cur is None or (row["occurred_at"], row["source_version"]) > (cur["occurred_at"],
                                                                              cur["source_version"]):
                links[subject] = row
        else:
            cur_e = entries.get(row["event_id"])
            if cur_e is None or row["source_version"] > cur_e["source_version"]:
                entries[row["event_id"]] = row
    return list(entries.values()), list(links.values())


def to_rows(decoded: Sequence[tuple[str, str, dict[str, Any]]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(entry rows, link rows) of decoded records, deduplicated as :func:`apply` writes them."""
    return dedupe(build(decoded))


def sealed_row(seal: Sealer, row: dict[str, Any]) -> dict[str, Any]:
    """The entry row with its summary and record sealed under its subject's data key (they may name the child)."""
    return {**row, "summary": seal.seal(T.summary, row["event_id"], row["subject"], row["summary"]),
            "record": seal.seal(T.record, row["event_id"], row["subject"], row["record"])}


def _insert(conn: Connection, table: sa.Table) -> Any:
    """The dialect's INSERT, which has ``ON CONFLICT`` (SQLite >= 3.24 and PostgreSQL)."""
    return (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)


def _chunks(items: list[Any]) -> list[list[Any]]:
    return [items[i:i + _IN_CHUNK] for i in range(0, len(items), _IN_CHUNK)]


def _apply_links(conn: Connection, links: list[dict[str, Any]], now: datetime) -> tuple[int, list[dict[str, Any]]]:
    current: dict[str, Any] = {}
    for part in _chunks([lk["subject"] for lk in links]):
        current.update((r.subject, r) for r in conn.execute(sa.select(identity_links).where(L.subject.in_(part))))
    winners: list[dict[str, Any]] = []
    moves: list[tuple[str, tuple[str, str] | None, tuple[str, str] | None]] = []
    for lk in links:
        cur = current.get(lk["subject"])
        if cur is not None and (lk["occurred_at"], lk["source_version"]) <= (as_utc(cur.occurred_at),
                                                                             cur.source_version):
            continue
        winners.append(lk)
        before = (cur.household_id, cur.child_id) if cur is not None and cur.active else None
        after = (lk["household_id"], lk["child_id"]) if lk["active"] else None
        if before != after:
            moves.append((lk["subject"], before, after))
    if winners:  # one statement for the batch: a new subject is inserted, a known one replaced
        stmt = _insert(conn, identity_links)
        stmt = stmt.on_conflict_do_update(index_elements=[L.subject],
                                          set_={c: stmt.excluded[c] for c in _LINK_UPDATE})
        conn.execute(stmt, winners)
    changes: list[dict[str, Any]] = []
    if moves:  # the entries of each subject whose household changed leave the old one and join the new one
        ids: dict[str, list[str]] = {}
        for part in _chunks([m[0] for m in moves]):
            for subject, event_id in conn.execute(sa.select(T.subject, T.event_id).where(T.subject.in_(part))
                                                  .order_by(T.subject, T.occurred_at, T.event_id)):
                ids.setdefault(subject, []).append(event_id)
        for subject, before, after in moves:
            for home, kind in ((before, "left"), (after, "joined")):
                if home:
                    changes += [{"household_id": home[0], "child_id": home[1], "event_id": e, "kind": kind,
                                 "at": now} for e in ids.get(subject, ())]
    return len(winners), changes


def _apply_entries(conn: Connection, entries: list[dict[str, Any]], now: datetime) -> tuple[int, list[dict[str, Any]]]:
    current: dict[str, int] = {}
    for part in _chunks([e["event_id"] for e in entries]):
        current.update(conn.execute(sa.select(T.event_id, T.source_version).where(T.event_id.in_(part))).all())
    latest: dict[str, datetime] = {}
    for part in _chunks(sorted({e["subject"] for e in entries})):
        latest.update((s, as_utc(t)) for s, t in conn.execute(
            sa.select(T.subject, sa.func.max(T.occurred_at)).where(T.subject.in_(part)).group_by(T.subject)))
    written: list[dict[str, Any]] = []
    added: list[tuple[str, str]] = []
    updated: list[tuple[str, str]] = []
    for e in sorted(entries, key=lambda x: x["received_at"]):
        subject, occurred = e["subject"], e["occurred_at"]
        seen = latest.get(subject)
        e["late"] = seen is not None and occurred < seen
        latest[subject] = max(seen, occurred) if seen else occurred
        known = current.get(e["event_id"])
        if known is None:
            added.append((e["event_id"], subject))
        elif e["source_version"] > known:
            updated.append((e["event_id"], subject))
        else:
            continue
        written.append(e)
    if written:  # one statement: new entries inserted, newer versions replace older ones (never the reverse)
        stmt = _insert(conn, timeline_entries)
        stmt = stmt.on_conflict_do_update(index_elements=[T.event_id],
                                          set_={c: stmt.excluded[c] for c in _ENTRY_UPDATE},
                                          where=stmt.excluded.source_version > T.source_version)
        conn.execute(stmt, written)
    changes: list[dict[str, Any]] = []
    if written:
        homes: dict[str, tuple[str, str]] = {}
        for part in _chunks(sorted({s for _, s in added} | {s for _, s in updated})):
            homes.update((r.subject, (r.household_id, r.child_id)) for r in conn.execute(
                sa.select(L.subject, L.household_id, L.child_id).where(L.subject.in_(part), L.active.is_(True))))
        for touched, kind in ((added, "added"), (updated, "updated")):
            changes += [{"household_id": homes[s][0], "child_id": homes[s][1], "event_id": eid, "kind": kind,
                         "at": now} for eid, s in touched if s in homes]
    return len(written), changes


def record_offsets(conn: Connection, offsets: Mapping[tuple[str, int], int], now: datetime) -> None:
    """Record, in the projection's transaction, the next offset of each (topic, partition) the batch
    came from; an offset never moves back (a batch redelivered after a crash leaves it where it is)."""
    if not offsets:
        return
    stmt = _insert(conn, stream_offsets)
    stmt = stmt.on_conflict_do_update(
        index_elements=[O.topic, O.partition],
        set_={"next_offset": sa.case((stmt.excluded.next_offset > O.next_offset, stmt.excluded.next_offset),
                                     else_=O.next_offset),
              "updated_at": stmt.excluded.updated_at})
    conn.execute(stmt, [{"topic": t, "partition": p, "next_offset": n, "updated_at": now}
                        for (t, p), n in sorted(offsets.items())])


def forget_offsets(store: Store) -> int:
    """Forget every recorded next offset, when the log they point into is gone (an embedded broker started
    again with an empty log, a new cluster): the records published again take other offsets there, and a
    worker would leave out as "applied already" each one below a stale position. The projections are
    idempotent, so applying again what they hold changes nothing. Returns how many were forgotten."""
    with store.engine.begin() as conn:
        return int(conn.execute(stream_offsets.delete()).rowcount or 0)


def offsets(store: Store) -> dict[tuple[str, int], int]:
    """The next offset per (topic, partition) that the projection holds everything before."""
    with store.engine.connect() as conn:
        return {(r.topic, r.partition): r.next_offset for r in conn.execute(sa.select(stream_offsets))}


#: PostgreSQL advisory lock key held from the change-feed insert to the commit (see lock_change_feed)
CHANGE_FEED_LOCK = 0x6875625F63686E67


def lock_change_feed(conn: Connection) -> None:
    """Make change-feed sequence numbers commit in order.

    Followers of ``timeline_changes`` (live streams, the sharing step) read ``seq > position``. On
    PostgreSQL two workers' transactions could take seqs 10 and 11 and commit 11 first; a follower
    reading then would move past 10 before it is visible and never see it. Holding a transaction
    lock from the insert to the commit orders them. SQLite has one writer at a time already.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("select pg_advisory_xact_lock(:k)"), {"k": CHANGE_FEED_LOCK})


def apply(store: Store, decoded: Sequence[tuple[str, str, dict[str, Any]]], *, record_changes: bool = True,
          offsets: Mapping[tuple[str, int], int] | None = None,
          positions: Sequence[tuple[str, int, int]] | None = None) -> int:
    """Apply a batch in one transaction; return how many rows changed.

    The rows are built first, outside the transaction (pure work), and the entries sealed; then identity
    links, entries, the change feed and (``offsets``, from a stream worker) the next offset of each partition
    the batch came from are written in one transaction, a bulk statement each. A replay rebuilds what
    families already saw, so it passes ``record_changes=False``: the change feed keeps its history and live
    streams see no repeats. With ``offsets``, the transaction first claims the batch's partitions
    (:func:`hub.stream.claims.claim`): records at ``positions`` (topic, partition, offset of each decoded
    record) that another worker applied meanwhile are left out.
    """
    built = build(decoded)
    return write(store, built, seal_entries(store, built), record_changes=record_changes, offsets=offsets,
                 positions=positions)


#: sealed entry rows by (event id, source version)
Sealed = dict[tuple[str, int], dict[str, Any]]


def seal_entries(store: Store, built: Built) -> Sealed:
    """The entry rows of ``built`` sealed, outside the write transaction (a subject's first data key is
    created in a transaction of its own); CPU-bound, so ``hub replay`` runs it in worker processes."""
    seal = sealer(store)
    with store.engine.connect() as conn:
        rows = [row for is_link, row, _, _ in _unerased(conn, built) if not is_link]
    seal.prefetch_current({row["subject"] for row in rows})
    return {(row["event_id"], row["source_version"]): sealed_row(seal, row) for row in rows}


def write(store: Store, built: Built, sealed: Sealed, *, record_changes: bool = True,
          offsets: Mapping[tuple[str, int], int] | None = None,
          positions: Sequence[tuple[str, int, int]] | None = None) -> int:
    """The write part of :func:`apply`: one transaction for the batch; ``sealed`` from :func:`seal_entries`."""
    now = utcnow()
    changed = 0
    changes: list[dict[str, Any]] = []
    seal = sealer(store)
    with store.engine.begin() as conn:
        # records of erased subjects never come back (redelivery, replay, a key still cached elsewhere)
        erasure_guard.hold_shared(conn)
        if offsets:  # one batch per partition at a time, across workers; what is already applied is skipped
            built, offsets = claims.claim(conn, built, positions, offsets)
        entries, links = dedupe(_unerased(conn, built))
        entries = [sealed.get((e["event_id"], e["source_version"])) or sealed_row(seal, e) for e in entries]
        if links:  # links first: entries in the same batch then land in the right household
            n, c = _apply_links(conn, links, now)
            changed, changes = changed + n, changes + c
        if entries:
            n, c = _apply_entries(conn, entries, now)
            changed, changes = changed + n, changes + c
        if changes and record_changes:
            lock_change_feed(conn)
            conn.execute(timeline_changes.insert(), changes)
        if offsets:
            record_offsets(conn, offsets, now)
    return changed


def clear(store: Store) -> None:
    """Empty the projections (before a replay); the stream offsets stay, as the stream's position is unchanged."""
    with store.engine.begin() as conn:
        conn.execute(timeline_entries.delete())
        conn.execute(identity_links.delete())
