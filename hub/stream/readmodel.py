"""Read queries over the projections: households, a family's timeline, parked events."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cache, lru_cache
from typing import Any

import sqlalchemy as sa

from hub.core import records
from hub.core.errors import ErasedRecordError, ValidationError
from hub.db.schema import disclosure_releases, identity_links, timeline_changes, timeline_entries
from hub.db.sealed import Sealer, sealer
from hub.db.store import Store, as_utc
from hub.stream.team import Appointment, TeamMember, team_around, upcoming

L = identity_links.c
T = timeline_entries.c
DR = disclosure_releases.c
#: an entry's disclosure hold was released (``released`` on every entry; the record says whether it had one)
RELEASED = DR.event_id.is_not(None).label("released")


def _entries() -> Any:
    return identity_links.join(timeline_entries, T.subject == L.subject).outerjoin(
        disclosure_releases, DR.event_id == T.event_id)


@dataclass(frozen=True)
class HouseholdSummary:
    household_id: str
    children: dict[str, int]  # child id -> timeline entries
    parked: int = 0


def event_clock(conn: sa.Connection) -> datetime | None:
    """The event-time clock: the latest event time of a record the hub holds, counting each record
    only up to when the hub received it (a record dated in the future does not move the clock)."""
    at = conn.execute(sa.select(sa.func.max(T.occurred_at)).where(
        T.occurred_at <= T.received_at, T.status == "active")).scalar()
    return as_utc(at) if at is not None else None


def households(store: Store) -> list[HouseholdSummary]:
    q = (sa.select(L.household_id, L.child_id, sa.func.count(T.event_id))
         .select_from(identity_links.outerjoin(timeline_entries, sa.and_(
             T.subject == L.subject, T.status == "active")))
         .where(L.active.is_(True)).group_by(L.household_id, L.child_id).order_by(L.household_id, L.child_id))
    out: dict[str, dict[str, int]] = {}
    with store.engine.connect() as conn:
        for hh, child, n in conn.execute(q):
            out.setdefault(hh, {})
            out[hh][child] = out[hh].get(child, 0) + int(n)
    return [HouseholdSummary(h, c) for h, c in out.items()]


def entry_counts(store: Store, household_ids: Iterable[str]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Per household, per linked child: its active entries as a read policy decides on them (with ``held``);
    a child with none has an empty list. One query for all the households."""
    ids = sorted(set(household_ids))
    out: dict[str, dict[str, list[dict[str, Any]]]] = {h: {} for h in ids}
    if not ids:
        return out
    q = (sa.select(L.household_id, L.child_id, T.event_id, T.record_type, T.sector, T.agency_id, T.service_name,
                   T.category, T.occurred_at, _hold_column(), RELEASED)
         .select_from(identity_links.outerjoin(timeline_entries, sa.and_(T.subject == L.subject,
                                                                         T.status == "active"))
                      .outerjoin(disclosure_releases, DR.event_id == T.event_id))
         .where(L.household_id.in_(ids), L.active.is_(True)))
    seal = sealer(store)
    with store.engine.connect() as conn:
        for r in conn.execute(q):
            row = dict(r._mapping)
            entries = out[row.pop("household_id")].setdefault(row["child_id"], [])
            if row["event_id"] is not None:
                row["occurred_at"] = as_utc(row["occurred_at"])
                entries.append(_with_hold(row, seal))
    return out


def parked_count(store: Store) -> int:
    linked = sa.select(L.subject).where(L.active.is_(True))
    q = sa.select(sa.func.count()).select_from(timeline_entries).where(T.subject.not_in(linked))
    with store.engine.connect() as conn:
        return int(conn.execute(q).scalar_one())


def _encode_cursor(occurred_at: datetime, event_id: str) -> str:
    raw = json.dumps([as_utc(occurred_at).isoformat(), event_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts, eid = json.loads(raw)
        return datetime.fromisoformat(ts), str(eid)
    except (ValueError, TypeError) as exc:
        raise ValidationError("cursor is not one this API issued", title="Invalid cursor") from exc


@cache
def holdable_types() -> frozenset[str]:
    """Record types whose schema carries a ``disclosure_hold`` flag or a ``third_party`` mention: the read
    policy's facts read from the record itself."""
    out = set()
    for t in records.catalogue():
        schema = json.loads(t.path.read_text())
        if any(f.get("name") in ("disclosure_hold", "third_party") for f in schema.get("fields", [])):
            out.add(t.name)
    return frozenset(out)


def hold_of(record: str | dict[str, Any] | None) -> bool:
    """Whether a record is under a disclosure hold not yet released (``released`` lifts it)."""
    if record is None:
        return False
    r = json.loads(record) if isinstance(record, str) else record
    return bool(r.get("disclosure_hold")) and not bool(r.get("released") or r.get("disclosure_released"))


@cache
def _hold_column() -> Any:
    return sa.case((T.record_type.in_(sorted(holdable_types())), T.record), else_=sa.null()).label("hold_record")


def _with_hold(row: dict[str, Any], seal: Sealer) -> dict[str, Any]:
    """``held``: under a disclosure hold not yet released (by the record, or by a release the hub recorded);
    ``third_party``: the record says it mentions someone other than the child. The sealed summary and record
    are opened here (an erased entry's summary reads ``[erased]``)."""
    row["released"] = bool(row.get("released"))
    if row.get("summary") is not None:
        row["summary"] = seal.text(T.summary, row["event_id"], row["summary"])
    raw = row.pop("hold_record", None)
    record = _opened(seal, row["event_id"], raw, erased={}) if isinstance(raw, str) else raw
    row["held"] = hold_of(record) and not row["released"]
    row["third_party"] = bool(record and record.get("third_party"))
    return row


#: Reads a row of the timeline (with ``held``) and returns what the reader may see of it, or None.
View = Callable[[dict[str, Any]], dict[str, Any] | None]


@dataclass(frozen=True)
class Prelude:
    """Rows read in the same statement as a timeline's first page (a read policy's facts about the reader's
    household), and what they make of the page: ``then(rows)`` gives the view and the children to narrow to."""

    query: Any  # a Select or CompoundSelect
    params: dict[str, Any]
    then: Callable[[list[tuple[Any, ...]]], tuple[View | None, Collection[str] | None]]


@cache
def _timeline_select() -> Any:
    """The timeline's columns over a household's linked entries, in event-time order (built once)."""
    return (sa.select(L.child_id, T.event_id, T.record_type, T.ce_type, T.sector, T.agency_id, T.service_name,
                      T.category, T.status, T.source_version, T.occurred_at, T.received_at, T.late, T.summary,
                      _hold_column(), RELEASED)
            .select_from(_entries())
            .order_by(T.occurred_at, T.event_id))


def _with_prelude(conn: sa.Connection, page_stmt: Any, prelude: Prelude
                  ) -> tuple[list[tuple[Any, ...]], list[dict[str, Any]]]:
    """The prelude's rows and the first batch, on one connection (one checkout, its ping and its rollback).

    Folding both into one ``UNION ALL`` statement was measured too: it saved a round trip but cost as much
    again building the longer statement per read (bench/README.md, "Timeline reads under the read policy")."""
    before = [tuple(r) for r in conn.execute(prelude.query, prelude.params)]
    return before, [dict(r._mapping) for r in conn.execute(page_stmt)]


def timeline(store: Store, household_id: str, *, child_id: str | None = None, sector: str | None = None,
             kind: str | None = None, since: datetime | None = None, until: datetime | None = None,
             cursor: str | None = None, limit: int = 50, view: View | None = None,
             only_children: Collection[str] | None = None,
             prelude: Prelude | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """One household's entries in event-time order, with a cursor for the next page.

    With ``view`` the page holds ``limit`` entries the reader may see (reading on past hidden ones),
    and the cursor names the last of them; ``only_children`` narrows the query to the children whose
    entries the view could show at all. With ``prelude`` the view and narrowing come from rows read in
    the same statement as the first batch (one round trip where there were two).
    """
    conds = [L.household_id == household_id, L.active.is_(True), T.status == "active"]
    if child_id:
        conds.append(L.child_id == child_id)
    if only_children is not None:
        conds.append(L.child_id.in_(sorted(only_children)))
    if sector:
        conds.append(T.sector == sector)
    if kind:
        conds.append(T.record_type == kind)
    if since:
        conds.append(T.occurred_at >= since)
    if until:
        conds.append(T.occurred_at < until)
    position = _decode_cursor(cursor) if cursor else None
    q = _timeline_select()
    seal = sealer(store)
    shown: list[tuple[dict[str, Any], dict[str, Any]]] = []
    batch = limit + 1
    with store.engine.connect() as conn:
        while len(shown) <= limit:
            where = list(conds)
            if position is not None:
                after = sa.tuple_(sa.literal(position[0], T.occurred_at.type), sa.literal(position[1]))
                where.append(sa.tuple_(T.occurred_at, T.event_id) > after)
            if prelude is not None:
                facts, rows = _with_prelude(conn, q.where(*where).limit(batch), prelude)
                view, narrow = prelude.then(facts)
                if narrow is not None:  # later batches only (the view hides the rest of this one)
                    conds.append(L.child_id.in_(sorted(narrow)))
                prelude = None
            else:
                rows = [dict(r._mapping) for r in conn.execute(q.where(*where).limit(batch))]
            for r in rows:
                r["occurred_at"] = as_utc(r["occurred_at"])
                r["received_at"] = as_utc(r["received_at"])
                seen = view(_with_hold(r, seal)) if view is not None else _with_hold(r, seal)
                if seen is not None:
                    shown.append((r, seen))
                    if len(shown) > limit:
                        break
            if len(rows) < batch:
                break
            position = (rows[-1]["occurred_at"], rows[-1]["event_id"])
            batch = max(batch, 200)
    nxt = None
    if len(shown) > limit:
        shown = shown[:limit]
        nxt = _encode_cursor(shown[-1][0]["occurred_at"], shown[-1][0]["event_id"])
    return [seen for _, seen in shown], nxt


def entries_by_id(store: Store, household_id: str, event_ids: Collection[str]) -> dict[str, dict[str, Any]]:
    """The household's timeline rows (with ``held``) of these event ids, for deciding who may see them."""
    if not event_ids:
        return {}
    q = (sa.select(L.child_id, T.event_id, T.record_type, T.sector, T.agency_id, T.service_name, T.category,
                   T.occurred_at, _hold_column(), RELEASED)
         .select_from(_entries())
         .where(L.household_id == household_id, L.active.is_(True), T.event_id.in_(sorted(event_ids))))
    seal = sealer(store)
    with store.engine.connect() as conn:
        rows = [_with_hold(dict(r._mapping), seal) for r in conn.execute(q)]
    for r in rows:
        r["occurred_at"] = as_utc(r["occurred_at"])
    return {r["event_id"]: r for r in rows}


def parse_times(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: parse_times(v) for k, v in value.items()}
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T":
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


#: records parsed once per process: most pages read a child's whole history (readiness, team, clocks)
RECORD_CACHE = 20_000


@lru_cache(maxsize=RECORD_CACHE)
def parsed_record(text: str) -> dict[str, Any]:
    """A stored record's JSON with its times as datetimes, remembered by the text itself: a pure function of
    what the row holds, so a new version, a correction or an erased row (no longer read) can never be answered
    from an older parse. Callers must not change what it returns in place (child_records copies its top level)."""
    value: dict[str, Any] = parse_times(json.loads(text))
    return value


def _opened(seal: Sealer, event_id: str, value: str, erased: Any = None) -> Any:
    """A stored record opened with its subject's key, then parsed (:func:`parsed_record`, by the opened text:
    the cache never answers for a value whose key was shredded); ``erased`` once it was."""
    try:
        return parsed_record(seal.open(T.record, event_id, value))
    except ErasedRecordError:
        return erased


def records_select() -> Any:
    """The columns :func:`entry_of` reads, over the active links' entries (add the ``where`` and the order)."""
    return (sa.select(L.household_id, L.child_id, T.event_id, T.record_type, T.category, T.sector, T.agency_id,
                      T.service_name, T.occurred_at, T.record, RELEASED)
            .select_from(_entries()).where(L.active.is_(True), T.status == "active"))


def entry_of(seal: Sealer, r: Any) -> dict[str, Any] | None:
    """A :func:`records_select` row as :func:`child_records` gives it; None once its subject was erased."""
    opened = _opened(seal, r.event_id, r.record)
    if opened is None:  # its subject was erased: not a record of the child any more
        return None
    record = dict(opened)  # a copy of the top level: callers may add keys, never share them
    return {"event_id": r.event_id, "record_type": r.record_type, "category": r.category,
            "sector": r.sector, "agency_id": r.agency_id, "service_name": r.service_name,
            "child_id": r.child_id, "occurred_at": as_utc(r.occurred_at),
            "held": hold_of(record) and not r.released, "released": bool(r.released),
            "third_party": bool(record.get("third_party")), "record": record}


def child_records(store: Store, household_id: str, child_id: str) -> list[dict[str, Any]]:
    """A child's active entries with their decoded records, in event-time order."""
    q = (records_select().where(L.household_id == household_id, L.child_id == child_id)
         .order_by(T.occurred_at, T.event_id))
    with store.engine.connect() as conn:
        rows = conn.execute(q).all()
    seal = sealer(store)
    return [e for e in (entry_of(seal, r) for r in rows) if e is not None]


def children(store: Store, household_id: str) -> list[str]:
    """Children of a household: enrolled as members, or linked by identity events."""
    from hub.db.schema import household_members as M

    linked = sa.select(L.child_id).where(L.household_id == household_id, L.active.is_(True))
    enrolled = sa.select(M.c.member_id).where(M.c.household_id == household_id, M.c.kind == "child")
    with store.engine.connect() as conn:
        return sorted({r[0] for r in conn.execute(linked.union(enrolled))})


def child_household(store: Store, child_id: str) -> str | None:
    """The household a child belongs to (by active identity link, else enrolment), or None."""
    from hub.db.schema import household_members as M

    linked = sa.select(L.household_id).where(L.child_id == child_id, L.active.is_(True)).limit(1)
    enrolled = sa.select(M.c.household_id).where(M.c.member_id == child_id, M.c.kind == "child")
    with store.engine.connect() as conn:
        return conn.execute(linked).scalar() or conn.execute(enrolled).scalar()


def household_exists(store: Store, household_id: str) -> bool:
    from hub.db.schema import households as H

    with store.engine.connect() as conn:
        if conn.execute(sa.select(H.c.household_id).where(H.c.household_id == household_id)).first():
            return True
        return conn.execute(sa.select(L.subject).where(L.household_id == household_id).limit(1)).first() is not None


#: Keeps a child's records (``child_records`` shape) a reader may see, minimised where details are withheld.
RecordsView = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


def team(store: Store, household_id: str, child_id: str, view: RecordsView | None = None) -> list[TeamMember]:
    entries = child_records(store, household_id, child_id)
    return team_around(view(entries) if view is not None else entries)


def upcoming_appointments(store: Store, household_id: str, now: datetime,
                          view: RecordsView | None = None) -> dict[str, list[Appointment]]:
    out = {}
    for c in children(store, household_id):
        entries = child_records(store, household_id, c)
        out[c] = upcoming(view(entries) if view is not None else entries, now)
    return out


def changes_since(store: Store, household_ids: list[str], after: int, limit: int = 200) -> list[dict[str, Any]]:
    """The change feed behind live streams: each change with the entry as it is now."""
    C = timeline_changes.c
    q = (sa.select(C.seq, C.household_id, C.child_id, C.kind, C.event_id, T.record_type, T.sector, T.agency_id,
                   T.service_name, T.category, T.status, T.source_version, T.occurred_at, T.received_at, T.late,
                   T.summary, _hold_column(), RELEASED)
         .select_from(timeline_changes.join(timeline_entries, T.event_id == C.event_id).outerjoin(
             disclosure_releases, DR.event_id == T.event_id))
         .where(C.household_id.in_(household_ids), C.seq > after).order_by(C.seq).limit(limit))
    seal = sealer(store)
    with store.engine.connect() as conn:
        rows = [_with_hold(dict(r._mapping), seal) for r in conn.execute(q)]
    for r in rows:
        r["occurred_at"] = as_utc(r["occurred_at"]).isoformat()
        r["received_at"] = as_utc(r["received_at"]).isoformat()
    return rows
