"""KPIs over the whole hub: the projection's records, the delivery ledger and the caseloads, handed to
the pure definitions of :mod:`hub.stream.kpis`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from hub.db.schema import caseloads, deliveries
from hub.db.store import Store, as_utc, utcnow
from hub.sharing.coordination import household_facts, statutory_clocks
from hub.stream import readmodel
from hub.stream.clocks import child_clocks
from hub.stream.kpis import By, Delivery, Period, all_kpis

D = deliveries.c


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


def kpis(store: Store, start: datetime, end: datetime, by: By = "service",
         now: datetime | None = None) -> dict[str, Any]:
    """Every KPI over ``[start, end)``, grouped by service or agency."""
    now = now or utcnow()
    children = [c for h in readmodel.households(store)
                for c in household_facts(store, h.household_id, as_coordinator=False)]
    clocks = statutory_clocks()
    running = [k for c in children for k in child_clocks(clocks, c, now)]
    return all_kpis(children, load_deliveries(store), caseload_sizes(store), Period(start, end), by, now, running)
