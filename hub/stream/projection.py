"""Writes decoded records into the database projections, idempotently and in any order.

Used by the stream worker for live events and by ``hub replay`` for rebuilding; both hand it
batches of decoded records. Timeline entries: highest source version wins. Identity links: the
link event with the highest (occurred_at, version) for a subject wins. Every change a family can
see — an entry added or updated, a subject's entries joining or leaving a household — is appended
to ``timeline_changes``, the feed behind the live streams and the sharing step. Records of erased
subjects are left out (:mod:`hub.erasure_guard`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.db import erasure_guard
from hub.db.schema import identity_links, timeline_changes, timeline_entries
from hub.db.sealed import Sealer, sealer
from hub.db.store import Store, as_utc, utcnow
from hub.stream.timeline import Entry, Link, entry_from, link_from

T = timeline_entries.c
L = identity_links.c


def to_rows(decoded: Sequence[tuple[str, str, dict[str, Any]]]) -> tuple[list[Entry], list[Link]]:
    entries: dict[str, Entry] = {}
    links: dict[str, Link] = {}
    for record_type, ce_type, record in decoded:
        if record_type == "IdentityLinked":
            link = link_from(record)
            cur = links.get(link.subject)
            if cur is None or (link.occurred_at, link.source_version) > (cur.occurred_at, cur.source_version):
                links[link.subject] = link
        else:
            entry = entry_from(record_type, ce_type, record)
            cur_e = entries.get(entry.event_id)
            if cur_e is None or entry.source_version > cur_e.source_version:
                entries[entry.event_id] = entry
    return list(entries.values()), list(links.values())


def sealed_entry(seal: Sealer, e: Entry) -> Entry:
    """The entry with its summary and record sealed under its subject's data key (they may name the child)."""
    return replace(e, summary=seal.seal(T.summary, e.event_id, e.subject, e.summary),
                   record=seal.seal(T.record, e.event_id, e.subject, e.record))


def _entry_ids(conn: Connection, subject: str) -> list[str]:
    return [r[0] for r in conn.execute(sa.select(T.event_id).where(T.subject == subject))]


def _apply_links(conn: Connection, links: list[Link], now: datetime) -> tuple[int, list[dict[str, Any]]]:
    changes: list[dict[str, Any]] = []
    current = {r.subject: r for r in conn.execute(sa.select(identity_links).where(
        L.subject.in_([lk.subject for lk in links])))}
    changed = 0
    for lk in links:
        cur = current.get(lk.subject)
        if cur is not None and (lk.occurred_at, lk.source_version) <= (as_utc(cur.occurred_at), cur.source_version):
            continue
        row = dict(vars(lk))
        if cur is None:
            conn.execute(identity_links.insert(), row)
        else:
            conn.execute(identity_links.update().where(L.subject == lk.subject).values(**row))
        changed += 1
        before = (cur.household_id, cur.child_id) if cur is not None and cur.active else None
        after = (lk.household_id, lk.child_id) if lk.active else None
        if before == after:
            continue
        ids = _entry_ids(conn, lk.subject)
        if before:
            changes += [dict(household_id=before[0], child_id=before[1], event_id=e, kind="left", at=now) for e in ids]
        if after:
            changes += [dict(household_id=after[0], child_id=after[1], event_id=e, kind="joined", at=now) for e in ids]
    return changed, changes


def _apply_entries(conn: Connection, entries: list[Entry], now: datetime) -> tuple[int, list[dict[str, Any]]]:
    subjects = {e.subject for e in entries}
    current = dict(conn.execute(sa.select(T.event_id, T.source_version).where(
        T.event_id.in_([e.event_id for e in entries]))).all())
    latest = {s: as_utc(t) for s, t in conn.execute(
        sa.select(T.subject, sa.func.max(T.occurred_at)).where(T.subject.in_(subjects)).group_by(T.subject))}
    inserts, updates = [], []
    for e in sorted(entries, key=lambda x: x.received_at):
        row = dict(vars(e))
        seen = latest.get(e.subject)
        row["late"] = seen is not None and e.occurred_at < seen
        latest[e.subject] = max(seen, e.occurred_at) if seen else e.occurred_at
        if e.event_id not in current:
            inserts.append(row)
        elif e.source_version > current[e.event_id]:
            row.pop("late")
            updates.append(row)
    if inserts:
        conn.execute(timeline_entries.insert(), inserts)
    for row in updates:
        conn.execute(timeline_entries.update().where(T.event_id == row["event_id"]).values(**row))
    touched = [(r["event_id"], r["subject"], "added") for r in inserts]
    touched += [(r["event_id"], r["subject"], "updated") for r in updates]
    changes: list[dict[str, Any]] = []
    if touched:
        homes = {r.subject: (r.household_id, r.child_id) for r in conn.execute(
            sa.select(L.subject, L.household_id, L.child_id).where(
                L.subject.in_({t[1] for t in touched}), L.active.is_(True)))}
        changes = [dict(household_id=homes[s][0], child_id=homes[s][1], event_id=eid, kind=kind, at=now)
                   for eid, s, kind in touched if s in homes]
    return len(inserts) + len(updates), changes


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


def apply(store: Store, decoded: Sequence[tuple[str, str, dict[str, Any]]], *, record_changes: bool = True) -> int:
    """Apply a batch in one transaction; return how many rows changed.

    A replay rebuilds what families already saw, so it passes ``record_changes=False``: the change
    feed keeps its history and live streams see no repeats.
    """
    now = utcnow()
    changed = 0
    changes: list[dict[str, Any]] = []
    seal = sealer(store)
    # sealed before the transaction: a subject's first data key is created in a transaction of its own
    with store.engine.connect() as conn:
        sealed = {e.event_id: sealed_entry(seal, e) for e in to_rows(erasure_guard.unerased(conn, decoded))[0]}
    with store.engine.begin() as conn:
        # records of erased subjects never come back (redelivery, replay, a key still cached elsewhere)
        erasure_guard.hold_shared(conn)
        entries, links = to_rows(erasure_guard.unerased(conn, decoded))
        entries = [sealed.get(e.event_id) or sealed_entry(seal, e) for e in entries]
        if links:  # links first: entries in the same batch then land in the right household
            n, c = _apply_links(conn, links, now)
            changed, changes = changed + n, changes + c
        if entries:
            n, c = _apply_entries(conn, entries, now)
            changed, changes = changed + n, changes + c
        if changes and record_changes:
            lock_change_feed(conn)
            conn.execute(timeline_changes.insert(), changes)
    return changed


def clear(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(timeline_entries.delete())
        conn.execute(identity_links.delete())
