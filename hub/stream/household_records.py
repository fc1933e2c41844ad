"""Many households' children and records in a few queries, for the sweeps that read households by the hundred.

:func:`household_records` gives, for each household, what :func:`hub.stream.readmodel.children` and
:func:`hub.stream.readmodel.child_records` give for it one query at a time: its children (enrolled, or linked by
an active identity link) in id order, each with their active entries in event-time order. The sealed records
are opened after one key query a chunk (:meth:`hub.db.sealed.Sealer.prefetch`), not one a subject.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from hub.db.schema import household_members, identity_links, timeline_entries
from hub.db.sealed import sealer
from hub.db.store import Store
from hub.stream.readmodel import entry_of, records_select

L = identity_links.c
T = timeline_entries.c
M = household_members.c
#: households per query; the readiness and coordination sweeps read and settle this many at a time (their records
#: are held together: about 100 opened entries a household)
CHUNK = 50
Records = dict[str, list[dict[str, Any]]]  # child id -> entries


def household_records(store: Store, household_ids: Sequence[str]) -> dict[str, Records]:
    """Each household's children, in id order, with their active entries (``child_records`` shape)."""
    ids = list(dict.fromkeys(household_ids))
    found: dict[str, dict[str, list[dict[str, Any]]]] = {hh: {} for hh in ids}
    seal = sealer(store)
    with store.engine.connect() as conn:
        for i in range(0, len(ids), CHUNK):
            part = ids[i:i + CHUNK]
            linked = sa.select(L.household_id, L.child_id).where(L.household_id.in_(part), L.active.is_(True))
            enrolled = sa.select(M.household_id, M.member_id).where(M.household_id.in_(part), M.kind == "child")
            for hh, child in conn.execute(linked.union(enrolled)):
                found[hh].setdefault(child, [])
            rows = conn.execute(records_select().where(L.household_id.in_(part))
                                .order_by(T.occurred_at, T.event_id)).all()
            seal.prefetch(r.record for r in rows)
            for r in rows:
                entry = entry_of(seal, r)
                if entry is not None:
                    found[r.household_id].setdefault(r.child_id, []).append(entry)
    return {hh: {c: children[c] for c in sorted(children)} for hh, children in found.items()}
