"""Read queries over the projections: households, a family's timeline, parked events."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from hub.core.errors import ValidationError
from hub.db.schema import disclosure_releases, identity_links, timeline_changes, timeline_entries
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


def timeline(store: Store, household_id: str, *, child_id: str | None = None, sector: str | None = None,
             kind: str | None = None, since: datetime | None = None, until: datetime | None = None,
             cursor: str | None = None, limit: int = 50) -> tuple[list[dict[str, Any]], str | None]:
    """One household's entries in event-time order, with a cursor for the next page."""
    conds = [L.household_id == household_id, L.active.is_(True), T.status == "active"]
    if child_id:
        conds.append(L.child_id == child_id)
    if sector:
        conds.append(T.sector == sector)
    if kind:
        conds.append(T.record_type == kind)
    if since:
        conds.append(T.occurred_at >= since)
    if until:
        conds.append(T.occurred_at < until)
    if cursor:
        ts, eid = _decode_cursor(cursor)
        after = sa.tuple_(sa.literal(ts, T.occurred_at.type), sa.literal(eid))
        conds.append(sa.tuple_(T.occurred_at, T.event_id) > after)
    q = (sa.select(L.child_id, T.event_id, T.record_type, T.ce_type, T.sector, T.agency_id, T.service_name,
                   T.category, T.status, T.source_version, T.occurred_at, T.received_at, T.late, T.summary, RELEASED)
         .select_from(_entries())
         .where(*conds).order_by(T.occurred_at, T.event_id).limit(limit + 1))
    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(q)]
    for r in rows:
        r["occurred_at"] = as_utc(r["occurred_at"])
        r["received_at"] = as_utc(r["received_at"])
        r["released"] = bool(r["released"])
    nxt = None
    if len(rows) > limit:
        rows = rows[:limit]
        nxt = _encode_cursor(rows[-1]["occurred_at"], rows[-1]["event_id"])
    return rows, nxt


def parse_times(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: parse_times(v) for k, v in value.items()}
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T":
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def child_records(store: Store, household_id: str, child_id: str) -> list[dict[str, Any]]:
    """A child's active entries with their decoded records, in event-time order."""
    q = (sa.select(T.event_id, T.record_type, T.category, T.occurred_at, T.record, RELEASED)
         .select_from(_entries())
         .where(L.household_id == household_id, L.child_id == child_id, L.active.is_(True), T.status == "active")
         .order_by(T.occurred_at, T.event_id))
    with store.engine.connect() as conn:
        rows = conn.execute(q).all()
    return [{"event_id": r.event_id, "record_type": r.record_type, "category": r.category,
             "occurred_at": as_utc(r.occurred_at), "record": parse_times(json.loads(r.record)),
             "released": bool(r.released)} for r in rows]


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


def team(store: Store, household_id: str, child_id: str) -> list[TeamMember]:
    return team_around(child_records(store, household_id, child_id))


def upcoming_appointments(store: Store, household_id: str, now: datetime) -> dict[str, list[Appointment]]:
    return {c: upcoming(child_records(store, household_id, c), now) for c in children(store, household_id)}


def changes_since(store: Store, household_ids: list[str], after: int, limit: int = 200) -> list[dict[str, Any]]:
    """The change feed behind live streams: each change with the entry as it is now."""
    C = timeline_changes.c
    q = (sa.select(C.seq, C.household_id, C.child_id, C.kind, C.event_id, T.record_type, T.sector, T.category,
                   T.status, T.source_version, T.occurred_at, T.received_at, T.late, T.summary)
         .select_from(timeline_changes.join(timeline_entries, T.event_id == C.event_id))
         .where(C.household_id.in_(household_ids), C.seq > after).order_by(C.seq).limit(limit))
    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(q)]
    for r in rows:
        r["occurred_at"] = as_utc(r["occurred_at"]).isoformat()
        r["received_at"] = as_utc(r["received_at"]).isoformat()
    return rows
