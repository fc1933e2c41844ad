"""Coordinator alerts and report requests (table ``alerts``), each raised once per ``alert_key``.

The lifecycle of an alert:

``open``
    raised by a chore (:func:`hub.sharing.escalation.escalate_unacknowledged`, the delivery pass,
    :func:`hub.sharing.readiness.sweep`), once per condition: its key is unique, so a condition seen
    again on every pass raises nothing new.
``acknowledged``
    a person said they have it in hand (:func:`acknowledge_alert`, the household's coordinator through
    ``POST /v1/households/{household_id}/alerts/{alert_id}/acknowledge``; audited as ``alert_acknowledged``).
``resolved``
    the condition cleared (:func:`resolve`): ``resolved_at`` and the ``resolution`` in words are set
    once, from open or acknowledged, by whichever chore or change sees it first. A resolved alert is
    not raised again for the same key.
removed
    ``HUB_ALERT_RETENTION_DAYS`` (365) after it was resolved, with its rows in the change feed, audited
    (:mod:`hub.governance.alert_retention`); open and acknowledged alerts are never removed.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.core.errors import NotFoundError
from hub.db.schema import alerts, share_decisions
from hub.db.sealed import Sealer, member_key, sealer, sealer_of
from hub.db.store import Store, as_utc, utcnow
from hub.governance.audit import AuditEntry, AuditLog, register_action

A = alerts.c
State = Literal["open", "acknowledged", "resolved"]
STATES: tuple[State, ...] = ("open", "acknowledged", "resolved")
ACK_ACTION = "alert_acknowledged"
register_action(ACK_ACTION, "a coordinator acknowledged an alert about a child (detail: alert id and kind)")


def coordinator_of(conn: Connection, child_id: str) -> tuple[str | None, str | None]:
    """The child's care coordination service (agency id, service), if the team has one."""
    sd = share_decisions.c
    row = conn.execute(sa.select(sd.recipient_agency_id, sd.recipient_service).where(
        sd.child_id == child_id, sd.recipient_kind == "coordinator").limit(1)).first()
    return (row[0], row[1]) if row else (None, None)


def raise_alert(conn: Connection, *, key: str, kind: str, household_id: str, child_id: str,
                to_agency_id: str | None, to_service: str | None, message: str, details: dict[str, Any],
                now: datetime, seal: Sealer | None = None) -> bool:
    """Insert the alert unless one with this key exists (open, acknowledged or resolved); True when raised.
    ``seal``: the sealer of ``conn``'s transaction (:func:`hub.db.sealed.sealer_of`) where the caller has one."""
    if conn.execute(sa.select(A.alert_id).where(A.alert_key == key)).first() is not None:
        return False
    seal = seal or sealer_of(conn)
    conn.execute(alerts.insert().values(
        alert_key=key, kind=kind, household_id=household_id, child_id=child_id, to_agency_id=to_agency_id,
        to_service=to_service, message=seal_message(seal, key, child_id, message),
        details=seal.seal(A.details, key, member_key(child_id), json.dumps(details, default=str)), created_at=now))
    return True


def seal_message(seal: Sealer, key: str, child_id: str, message: str) -> str:
    """An alert's words, sealed under the child's member key (they can repeat a report's title)."""
    return seal.seal(A.message, key, member_key(child_id), message)


def opened(seal: Sealer, row: dict[str, Any]) -> dict[str, Any]:
    """An alert row with its sealed message and details opened (by its ``alert_key``); once the child's key was
    shredded the message reads ``[erased]`` and the details are empty."""
    key = row["alert_key"]
    if "message" in row:
        row["message"] = seal.text(A.message, key, row["message"])
    if "details" in row:
        row["details"] = seal.json(A.details, key, row["details"], erased={})
    return row


def resolve(conn: Connection, key: str, reason: str, now: datetime) -> bool:
    """Resolve the alert with this key if it is not resolved yet; True when this call resolved it."""
    return bool(conn.execute(alerts.update().where(A.alert_key == key, A.resolved_at.is_(None)).values(
        resolved_at=now, resolution=reason)).rowcount)


def unresolved(conn: Connection, kinds: tuple[str, ...], household_id: str | None = None,
               limit: int = 1000) -> list[dict[str, Any]]:
    """Alerts of these kinds still open or acknowledged (details decoded), oldest first."""
    q = sa.select(A.alert_id, A.alert_key, A.kind, A.child_id, A.details).where(
        A.kind.in_(kinds), A.resolved_at.is_(None)).order_by(A.alert_id).limit(limit)
    if household_id is not None:
        q = q.where(A.household_id == household_id)
    seal = sealer_of(conn)
    return [opened(seal, dict(r._mapping)) for r in conn.execute(q)]


def state_of(row: Any) -> State:
    if row.resolved_at is not None:
        return "resolved"
    return "acknowledged" if row.acknowledged_at is not None else "open"


def _where_state(state: State) -> sa.ColumnElement[bool]:
    if state == "resolved":
        return A.resolved_at.is_not(None)
    ack = A.acknowledged_at.is_not(None) if state == "acknowledged" else A.acknowledged_at.is_(None)
    return sa.and_(A.resolved_at.is_(None), ack)


def _view(row: Any, seal: Sealer) -> dict[str, Any]:
    r = opened(seal, dict(row._mapping))
    r["state"] = state_of(row)
    for k in ("created_at", "acknowledged_at", "resolved_at"):
        r[k] = as_utc(r[k]) if r[k] is not None else None
    return r


def list_alerts(store: Store, *, household_id: str | None = None, kind: str | None = None,
                open_only: bool = True, state: State | None = None) -> list[dict[str, Any]]:
    """Alerts, oldest first: in ``state`` if given, else those not resolved (``open_only``) or all."""
    q = sa.select(alerts).order_by(A.alert_id)
    if household_id:
        q = q.where(A.household_id == household_id)
    if kind:
        q = q.where(A.kind == kind)
    if state is not None:
        q = q.where(_where_state(state))
    elif open_only:
        q = q.where(A.resolved_at.is_(None))
    seal = sealer(store)
    with store.engine.connect() as conn:
        return [_view(r, seal) for r in conn.execute(q)]


def acknowledge_alert(store: Store, household_id: str, alert_id: int, *, actor: str, actor_role: str,
                      now: datetime | None = None) -> dict[str, Any]:
    """A person acknowledges an open alert of this household; audited in the same transaction.

    Idempotent: an alert already acknowledged or resolved is returned as it is (and not audited again).
    """
    now = now or utcnow()
    audit = AuditLog(store)
    with store.engine.begin() as conn:  # the update takes the write lock before the audit chain is read
        row = conn.execute(sa.select(alerts).where(A.alert_id == alert_id, A.household_id == household_id)).first()
        if row is None:
            raise NotFoundError("no such alert for this household")
        if state_of(row) == "open" and conn.execute(alerts.update().where(
                A.alert_id == alert_id, A.acknowledged_at.is_(None), A.resolved_at.is_(None)).values(
                acknowledged_at=now, acknowledged_by=actor)).rowcount:
            audit.record_in(conn, AuditEntry(
                ACK_ACTION, actor=actor, actor_role=actor_role, subject_household=household_id,
                subject_child=row.child_id, data_ref="POST /v1/households/{household_id}/alerts/{alert_id}/acknowledge",
                detail={"alert_id": alert_id, "kind": row.kind}))
            row = conn.execute(sa.select(alerts).where(A.alert_id == alert_id)).one()
    return _view(row, sealer(store))
