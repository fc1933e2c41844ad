"""The records of the children a sharing pass touches, each version opened once per process.

The sharing step decides with a child's whole record (the team around the child, the services it has
seen, every shareable entry), so every pass reads the whole record of every child its changes touch.
A child with a hundred entries that gains one was read, unsealed and parsed a hundred times over.

:func:`child_records` reads the children's entries in two steps: first only their ids and versions
(``event_id``, ``source_version``: small columns, no sealed text); then the sealed record of the
entries the :class:`RecordMemo` does not hold at that version, opened and parsed. The memo is keyed by
``(event_id, source_version)``, which names one content for good: the projection replaces an entry only
with a higher version, and nothing else writes ``timeline_entries.record`` (an erasure deletes the row).
A correction or a new version is a miss and is read again; an entry no longer active or no longer
linked to the child is not in the first step's answer and so is not used.

What the memo holds is what the pass held anyway, kept for the next pass, and never for long:

* at most ``HUB_SHARING_MEMO_RECORDS`` entries (least recently used go first; 0 keeps none);
* let go whole when an erasure was made since the last read (``erasures`` counted at each read: a right
  to erasure is not left waiting in a worker's memory), and at the latest ``MAX_AGE`` after it was
  started (a record removed at the end of its retention goes with it);
* dropped for a child the pass finds without links (erased, or every link undone), and let go when the
  process loses the sharing cursor.

The entries it returns are shared between passes: callers must not change them in place. The memo also holds
the children's views (:mod:`hub.sharing.child_views`: what decides their recipients), let go with it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from hub.db.schema import erasures, identity_links, timeline_entries
from hub.db.sealed import sealer
from hub.db.store import Store, as_utc
from hub.sharing.child_views import ChildViews

L = identity_links.c
T = timeline_entries.c
Home = tuple[str, str]  # (household id, child id)
Entry = dict[str, Any]
#: children per query of the first step; entries per query of the second
CHILDREN_CHUNK = 300
ENTRIES_CHUNK = 500
#: seconds after which the memo starts again empty
MAX_AGE = 600.0


class RecordMemo:
    """Opened entries by ``(event_id, source_version)``, at most ``max_records`` of them."""

    def __init__(self, max_records: int = 10_000, *, max_age: float = MAX_AGE) -> None:
        self.max_records = max_records
        self.max_age = max_age
        self._held: OrderedDict[str, tuple[int, Entry]] = OrderedDict()
        self._started = time.monotonic()
        self._erasures: int | None = None  # how many erasures there were when the memo was last read
        #: what decides each child's recipients, as of their last whole read (as many children as records)
        self.views = ChildViews(max_records)
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._held)

    def get(self, event_id: str, version: int) -> Entry | None:
        held = self._held.get(event_id)
        if held is None or held[0] != version:
            self.misses += 1
            return None
        self._held.move_to_end(event_id)
        self.hits += 1
        return held[1]

    def put(self, event_id: str, version: int, entry: Entry) -> None:
        if self.max_records <= 0:
            return
        self._held[event_id] = (version, entry)
        self._held.move_to_end(event_id)
        while len(self._held) > self.max_records:
            self._held.popitem(last=False)

    def forget(self, event_ids: Iterable[str]) -> None:
        for event_id in event_ids:
            self._held.pop(event_id, None)

    def clear(self) -> None:
        self._held.clear()
        self.views.clear()
        self._started = time.monotonic()

    def check(self, erasures_now: int) -> None:
        """Start again empty if an erasure was made since the last read, or the memo is older than ``max_age``."""
        if erasures_now != self._erasures or time.monotonic() - self._started > self.max_age:
            self.clear()
        self._erasures = erasures_now


def refresh(conn: sa.Connection, memo: RecordMemo) -> None:
    """Let the memo go if an erasure was made since it was last read, or it is older than its ``max_age``."""
    if memo.max_records:
        memo.check(conn.execute(sa.select(sa.func.count()).select_from(erasures)).scalar_one())


def entries_by_id(store: Store, event_ids: list[str], memo: RecordMemo) -> dict[str, Entry]:
    """The active entries among ``event_ids``, opened (``child_records`` shape; an erased subject's are left out)."""
    found: dict[str, Entry] = {}
    with store.engine.connect() as conn:
        refresh(conn, memo)
        _open(store, conn, [(e, -1) for e in event_ids], found, memo)
    return found


def child_records(store: Store, homes: list[Home], memo: RecordMemo | None = None) -> dict[Home, list[Entry]]:
    """Each child's active entries in event-time order: ``event_id``, ``record_type``, ``occurred_at`` (UTC) and
    ``record`` (the decoded record; its times stay ISO strings). An entry whose subject was erased is left out."""
    memo = memo if memo is not None else RecordMemo(0)
    listed: dict[Home, list[tuple[str, int]]] = {h: [] for h in homes}
    with store.engine.connect() as conn:
        refresh(conn, memo)
        for i in range(0, len(homes), CHILDREN_CHUNK):
            q = (sa.select(L.household_id, L.child_id, T.event_id, T.source_version)
                 .select_from(identity_links.join(timeline_entries, T.subject == L.subject))
                 .where(sa.tuple_(L.household_id, L.child_id).in_(homes[i:i + CHILDREN_CHUNK]), L.active.is_(True),
                        T.status == "active").order_by(T.occurred_at, T.event_id))
            for r in conn.execute(q):
                listed[(r.household_id, r.child_id)].append((r.event_id, int(r.source_version)))
        found: dict[str, Entry] = {}
        wanted: list[tuple[str, int]] = []
        for ids in listed.values():
            for event_id, version in ids:
                hit = memo.get(event_id, version)
                if hit is None:
                    wanted.append((event_id, version))
                else:
                    found[event_id] = hit
        moved = _open(store, conn, wanted, found, memo)
    out: dict[Home, list[Entry]] = {}
    for home, ids in listed.items():
        entries = [found[e] for e, _v in ids if e in found]
        if moved and any(e in moved for e, _v in ids):  # a newer version came in between the steps: its time may differ
            entries.sort(key=lambda x: (x["occurred_at"], x["event_id"]))
        out[home] = entries
    return out


def _open(store: Store, conn: sa.Connection, wanted: list[tuple[str, int]], found: dict[str, Entry],
          memo: RecordMemo) -> set[str]:
    """Read, open and parse the ``wanted`` entries into ``found`` (and the memo); the ids read at another version."""
    if not wanted:
        return set()
    seal = sealer(store)
    versions = dict(wanted)
    ids = sorted(versions)
    moved: set[str] = set()
    for i in range(0, len(ids), ENTRIES_CHUNK):
        q = (sa.select(T.event_id, T.source_version, T.record_type, T.occurred_at, T.record)
             .where(T.event_id.in_(ids[i:i + ENTRIES_CHUNK]), T.status == "active"))
        rows = conn.execute(q).all()
        seal.prefetch(r.record for r in rows)  # their subjects' keys in a few queries, not one a subject
        for r in rows:
            record = seal.json(T.record, r.event_id, r.record)
            if record is None:  # its subject was erased
                continue
            entry = {"event_id": r.event_id, "record_type": r.record_type, "occurred_at": as_utc(r.occurred_at),
                     "record": record}
            found[r.event_id] = entry
            memo.put(r.event_id, int(r.source_version), entry)
            if int(r.source_version) != versions[r.event_id]:
                moved.add(r.event_id)
    return moved
