"""KPIs over the whole hub: the projection's records, the delivery ledger and the caseloads, handed to
the pure definitions of :mod:`hub.stream.kpis`."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from hub.core.errors import Problem, ValidationError
from hub.core.privacy import pseudonymous
from hub.db.schema import caseloads, deliveries, household_members
from hub.db.store import Store, as_utc, utcnow
from hub.sharing.coordination import household_facts, statutory_clocks
from hub.stream import readmodel
from hub.stream.clocks import child_clocks
from hub.stream.household_types import TYPES, Member
from hub.stream.household_types import household_type as type_of
from hub.stream.kpis import By, Delivery, Grouping, Period, all_kpis

D = deliveries.c
#: an unknown household type short and plain enough to say back to the caller (never one with control
#: characters, quotes, or the shape of an identifier)
_SAYABLE = re.compile(r"[A-Za-z0-9 _-]{1,40}")


def _utc(at: datetime | None) -> datetime | None:
    return as_utc(at) if at is not None else None


def load_deliveries(store: Store) -> list[Delivery]:
    """Every share delivered (or not yet), as the KPIs read them; notices and recalls are not shares."""
    q = sa.select(D.information_id, D.recipient_kind, D.agency_id, D.service, D.delivered_at, D.acknowledged_at).where(
        D.kind == "share")
    with store.engine.connect() as conn:
        return [Delivery(r.information_id, r.recipient_kind, r.agency_id, r.service, _utc(r.delivered_at),
                         _utc(r.acknowledged_at)) for r in conn.execute(q)]


def caseload_sizes(store: Store) -> dict[str, int]:
    C = caseloads.c
    with store.engine.connect() as conn:
        return {r[0]: int(r[1]) for r in conn.execute(
            sa.select(C.coordinator_id, sa.func.count()).group_by(C.coordinator_id))}


def household_types(store: Store, linked: dict[str, list[str]]) -> dict[str, str]:
    """Each household's type (:mod:`hub.stream.household_types`) from its enrolled members and ``linked``
    (household id → children linked by identifier)."""
    M = household_members.c
    members: dict[str, list[Member]] = {}
    with store.engine.connect() as conn:
        for r in conn.execute(sa.select(M.household_id, M.member_id, M.kind, M.parental_responsibility,
                                        M.corporate_parent)):
            members.setdefault(r.household_id, []).append(
                Member(r.member_id, r.kind, bool(r.parental_responsibility), r.corporate_parent))
    return {h: type_of(members.get(h, ()), linked.get(h, ())) for h in set(members) | set(linked)}


def kpis(store: Store, start: datetime, end: datetime, by: By = "service", now: datetime | None = None,
         household_type: str | None = None) -> dict[str, Any]:
    """Every KPI over ``[start, end)``, grouped by service, agency or household type; with ``household_type``,
    over the children of households of that type only (caseload sizes stay whole)."""
    if household_type is not None and household_type not in TYPES:
        said = f" {household_type!r}" if _SAYABLE.fullmatch(household_type) and pseudonymous(household_type) else ""
        raise ValidationError(Problem("/household_type", f"unknown household type{said} (known: {', '.join(TYPES)})"))
    now = now or utcnow()
    summaries = readmodel.households(store)
    types = household_types(store, {h.household_id: list(h.children) for h in summaries})
    children = [c for h in summaries if household_type is None or types.get(h.household_id) == household_type
                for c in household_facts(store, h.household_id, as_coordinator=False)]
    clocks = statutory_clocks()
    running = [k for c in children for k in child_clocks(clocks, c, now)]
    result = all_kpis(children, load_deliveries(store), caseload_sizes(store), Period(start, end),
                      Grouping(by, types), now, running)
    return {**result, "household_type": household_type}
