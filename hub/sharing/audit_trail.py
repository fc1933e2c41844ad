"""Every sharing decision, consent change and recall becomes an audit record.

The sharing step writes decisions and directives in its own transactions; this module then copies
what is new into the hash-chained audit log, in order, and moves a cursor (``audit_cursors``). A
crash between the two writes can repeat an audit record (same ``data_ref``), never lose one.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from hub.db.schema import audit_cursors, consent_directives, deliveries, share_decisions
from hub.db.sealed import sealer
from hub.db.store import Store, as_utc
from hub.governance.audit import AuditEntry, AuditLog
from hub.sharing import payloads

SD = share_decisions.c
CD = consent_directives.c
DL = deliveries.c
ACTOR = "hub-sharing"


def _action(outcome: str, basis: str) -> str:
    if outcome == "permit":
        return "override" if basis == "safeguarding" else "share"
    return "hold" if outcome == "hold" else "withhold"


def _position(conn: sa.Connection, name: str) -> tuple[datetime | None, str]:
    row = conn.execute(sa.select(audit_cursors.c.position).where(audit_cursors.c.name == name)).first()
    if not row:
        return None, ""
    at, _, key = row[0].partition("|")
    return datetime.fromisoformat(at), key


def _save(conn: sa.Connection, name: str, at: datetime, key: str) -> None:
    value = f"{as_utc(at).isoformat()}|{key}"
    if conn.execute(audit_cursors.update().where(audit_cursors.c.name == name).values(position=value)).rowcount == 0:
        conn.execute(audit_cursors.insert().values(name=name, position=value))


def _after(col_at: Any, col_key: Any, at: datetime | None, key: str) -> Any:
    if at is None:
        return sa.true()
    return sa.or_(col_at > at, sa.and_(col_at == at, col_key > key))


def record_new(store: Store, limit: int = 2000) -> int:
    """Copy new decisions and consent changes into the audit log; return how many records were written."""
    log = AuditLog(store)
    written = 0
    with store.engine.connect() as conn:
        at, key = _position(conn, "share_decisions")
        rows = conn.execute(sa.select(share_decisions).where(_after(SD.decided_at, SD.decision_id, at, key))
                            .order_by(SD.decided_at, SD.decision_id).limit(limit)).all()
        c_at, c_key = _position(conn, "consent_directives")
        changes = conn.execute(sa.select(consent_directives).where(
            _after(CD.updated_at, CD.directive_id, c_at, c_key)).order_by(CD.updated_at, CD.directive_id)
            .limit(limit)).all()
        r_at, r_key = _position(conn, "recalls")
        recalls = conn.execute(sa.select(deliveries).where(
            DL.kind == "recall", _after(DL.created_at, DL.delivery_id, r_at, r_key))
            .order_by(DL.created_at, DL.delivery_id).limit(limit)).all()
    seal = sealer(store)
    entries = [AuditEntry(
        action=_action(r.outcome, r.basis), actor=ACTOR, actor_role="system", subject_household=r.household_id,
        subject_child=r.child_id, data_ref=r.decision_id, purpose=r.purpose, legal_basis=r.basis,
        detail={"information": r.information_id, "record_type": r.record_type, "recipient": r.recipient_key,
                "rule": r.rule_id, "ruleset": r.ruleset_version, "reasons": json.loads(r.reasons),
                "trigger": r.trigger, "requires_ig_review": bool(r.requires_ig_review)}) for r in rows]
    entries += [AuditEntry(
        action="consent_change", actor=ACTOR, actor_role="system", subject_household=c.household_id,
        subject_child=c.child_id, data_ref=c.directive_id, purpose="consent", legal_basis="consent",
        detail={"status": c.status, "event": c.event_id or "", "version": int(c.source_version)}) for c in changes]
    entries += [AuditEntry(
        action="recall", actor=ACTOR, actor_role="system", subject_household=r.household_id,
        subject_child=r.child_id, data_ref=r.delivery_id, purpose="recall",
        detail={"information": r.information_id, "recipient": r.recipient_key, "reason": r.why or "",
                "recalls": payloads.body(seal, r.delivery_id, r.payload).get("recalls", "")}) for r in recalls]
    if entries:
        log.record_many(entries)
        written = len(entries)
    with store.engine.begin() as conn:
        if rows:
            _save(conn, "share_decisions", as_utc(rows[-1].decided_at), rows[-1].decision_id)
        if changes:
            _save(conn, "consent_directives", as_utc(changes[-1].updated_at), changes[-1].directive_id)
        if recalls:
            _save(conn, "recalls", as_utc(recalls[-1].created_at), recalls[-1].delivery_id)
    return written
