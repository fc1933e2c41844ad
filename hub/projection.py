"""Writes decoded records into the database projections, idempotently and in any order.

Used by the stream worker for live events and by ``hub replay`` for rebuilding; both hand it
batches of decoded records. Timeline entries: highest source version wins. Identity links: the
link event with the highest (occurred_at, version) for a subject wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import sqlalchemy as sa

from hub.store import Store, as_utc, identity_links, timeline_entries
from hub.timeline import Entry, Link, entry_from, link_from


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


def apply(store: Store, decoded: Sequence[tuple[str, str, dict[str, Any]]]) -> int:
    """Apply a batch in one transaction; return how many rows changed."""
    entries, links = to_rows(decoded)
    changed = 0
    with store.engine.begin() as conn:
        if entries:
            t = timeline_entries.c
            current = dict(conn.execute(sa.select(t.event_id, t.source_version)
                                        .where(t.event_id.in_([e.event_id for e in entries]))).all())
            inserts = [asdict(e) for e in entries if e.event_id not in current]
            updates = [asdict(e) for e in entries if e.event_id in current and e.source_version > current[e.event_id]]
            if inserts:
                conn.execute(timeline_entries.insert(), inserts)
            for row in updates:
                conn.execute(timeline_entries.update().where(t.event_id == row["event_id"]).values(**row))
            changed += len(inserts) + len(updates)
        if links:
            c = identity_links.c
            current_links = {r.subject: (as_utc(r.occurred_at), r.source_version) for r in conn.execute(
                sa.select(c.subject, c.occurred_at, c.source_version).where(c.subject.in_([lk.subject for lk in links])))}
            for lk in links:
                cur = current_links.get(lk.subject)
                row = asdict(lk)
                if cur is None:
                    conn.execute(identity_links.insert(), row)
                elif (lk.occurred_at, lk.source_version) > cur:
                    conn.execute(identity_links.update().where(c.subject == lk.subject).values(**row))
                else:
                    continue
                changed += 1
    return changed


def clear(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(timeline_entries.delete())
        conn.execute(identity_links.delete())
