"""Coordinator alerts and report requests (table ``alerts``), each raised once per ``alert_key``."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.db.schema import alerts, share_decisions
from hub.db.store import Store, as_utc

A = alerts.c


def coordinator_of(conn: Connection, child_id: str) -> tuple[str | None, str | None]:
    """The child's care coordination service (agency id, service), if the team has one."""
    sd = share_decisions.c
    row = conn.execute(sa.select(sd.recipient_agency_id, sd.recipient_service).where(
        sd.child_id == child_id, sd.recipient_kind == "coordinator").limit(1)).first()
    return (row[0], row[1]) if row else (None, None)


def raise_alert(conn: Connection, *, key: str, kind: str, household_id: str, child_id: str,
                to_agency_id: str | None, to_service: str | None, message: str, details: dict[str, Any],
                now: datetime) -> bool:
    """Insert the alert unless one with this key exists; True when a new one was raised."""
    if conn.execute(sa.select(A.alert_id).where(A.alert_key == key)).first() is not None:
        return False
    conn.execute(alerts.insert().values(
        alert_key=key, kind=kind, household_id=household_id, child_id=child_id, to_agency_id=to_agency_id,
        to_service=to_service, message=message, details=json.dumps(details, default=str), created_at=now))
    return True


def list_alerts(store: Store, *, household_id: str | None = None, kind: str | None = None,
                open_only: bool = True) -> list[dict[str, Any]]:
    q = sa.select(alerts).order_by(A.alert_id)
    if household_id:
        q = q.where(A.household_id == household_id)
    if kind:
        q = q.where(A.kind == kind)
    if open_only:
        q = q.where(A.resolved_at.is_(None))
    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(q)]
    for r in rows:
        r["details"] = json.loads(r["details"])
        r["created_at"] = as_utc(r["created_at"])
        if r["resolved_at"] is not None:
            r["resolved_at"] = as_utc(r["resolved_at"])
    return rows
