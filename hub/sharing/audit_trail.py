"""The audit records of the sharing step, written in the same transaction as what they record.

Every row the sharing step writes that changes who holds what gets its audit record beside it, in
the same database transaction (:func:`hub.governance.audit.append_in`, under the audit chain's
write lock): either both commit or neither does.

* a decision (``share_decisions`` row) → ``share``, ``override`` (safeguarding basis), ``hold`` or
  ``withhold``, ``data_ref`` the decision id (the queued or withheld share it moves is part of it);
* a queued share or notice cancelled, or a share that may have been received closed in doubt →
  ``cancel``, ``data_ref`` the delivery id (the deliverer's own cancellations too: a share whose
  directive was withdrawn after the decision);
* a withdrawal notice queued → ``withdrawal_notice``, ``data_ref`` the notice's delivery id (also
  when the deliverer follows a share sent while it was withdrawn);
* a recall → ``recall``, ``data_ref`` the recall's delivery id;
* a consent directive the step records from a child's record (granted, withdrawn, pending, moved
  with a link) → ``consent_change``, ``data_ref`` the directive id.

Details hold the hub's own ids, codes and the engine's reasons only (the audit writer refuses
anything shaped like an NHS number, UPN or bare date; such a record is dead-lettered in the same
transaction and counted, as docs/operations.md says).

Rows written by an earlier release, whose records were copied later by a chores job, may still
wait to be copied when a deployment upgrades: :func:`catch_up` copies those (the ones after that
job's cursors, ``audit_cursors``, that have no record yet) and then deletes the cursors, after
which it does nothing. A fresh database has no cursors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from hub.db.schema import audit_cursors, audit_log, consent_directives, deliveries, share_decisions
from hub.db.sealed import sealer_of
from hub.db.store import Store, as_utc
from hub.governance.audit import AuditEntry, AuditLog, append_in
from hub.governance.audit_records import canonical_detail
from hub.sharing import payloads

SD = share_decisions.c
CD = consent_directives.c
DL = deliveries.c
A = audit_log.c
ACTOR = "hub-sharing"
#: the cursors of the copying job of earlier releases, by the table they followed
CURSORS = ("share_decisions", "consent_directives", "recalls")


def _action(outcome: str, basis: str) -> str:
    if outcome == "permit":
        return "override" if basis == "safeguarding" else "share"
    return "hold" if outcome == "hold" else "withhold"


def decision_entry(r: Mapping[Any, Any]) -> AuditEntry:
    """The record of a ``share_decisions`` row."""
    reasons = r["reasons"]
    return AuditEntry(
        action=_action(r["outcome"], r["basis"]), actor=ACTOR, actor_role="system",
        subject_household=r["household_id"], subject_child=r["child_id"], data_ref=r["decision_id"],
        purpose=r["purpose"], legal_basis=r["basis"],
        detail={"information": r["information_id"], "record_type": r["record_type"], "recipient": r["recipient_key"],
                "rule": r["rule_id"], "ruleset": r["ruleset_version"],
                "reasons": json.loads(reasons) if isinstance(reasons, str) else list(reasons),
                "trigger": r["trigger"], "requires_ig_review": bool(r["requires_ig_review"])})


def consent_entry(r: Mapping[Any, Any]) -> AuditEntry:
    """The record of a ``consent_directives`` row as the step left it."""
    return AuditEntry(
        action="consent_change", actor=ACTOR, actor_role="system", subject_household=r["household_id"],
        subject_child=r["child_id"], data_ref=r["directive_id"], purpose="consent", legal_basis="consent",
        detail={"status": r["status"], "event": r["event_id"] or "", "version": int(r["source_version"])})


def recall_entry(r: Mapping[Any, Any], body: Mapping[str, Any]) -> AuditEntry:
    """The record of a ``recall`` delivery row, whose payload (sealed in the row) is ``body``."""
    return AuditEntry(
        action="recall", actor=ACTOR, actor_role="system", subject_household=r["household_id"],
        subject_child=r["child_id"], data_ref=r["delivery_id"], purpose="recall",
        detail={"information": r["information_id"], "recipient": r["recipient_key"], "reason": r["why"] or "",
                "recalls": body.get("recalls", "")})


def notice_entry(r: Mapping[Any, Any]) -> AuditEntry:
    """The record of a ``withdrawal_notice`` delivery row."""
    return AuditEntry(
        action="withdrawal_notice", actor=ACTOR, actor_role="system", subject_household=r["household_id"],
        subject_child=r["child_id"], data_ref=r["delivery_id"], purpose="withdrawal",
        detail={"information": r["information_id"], "version": int(r["information_version"]),
                "recipient": r["recipient_key"], "decision": r["decision_id"] or "", "round": int(r["round"])})


def cancel_entry(r: Mapping[Any, Any], why: str, decision_id: str | None, *, in_doubt: bool = False) -> AuditEntry:
    """The record of a delivery cancelled (or closed in doubt); ``r`` the delivery row before the change."""
    return AuditEntry(
        action="cancel", actor=ACTOR, actor_role="system", subject_household=r["household_id"],
        subject_child=r["child_id"], data_ref=r["delivery_id"], purpose="cancel",
        detail={"information": r["information_id"], "version": int(r["information_version"]),
                "recipient": r["recipient_key"], "kind": r["kind"], "why": why, "decision": decision_id or "",
                "in_doubt": in_doubt})


def write(conn: sa.Connection, entries: list[AuditEntry]) -> int:
    """Append ``entries`` in the caller's transaction (see :func:`hub.governance.audit.append_in`)."""
    return append_in(conn, entries) if entries else 0


# ------------------------------------------------------------------ rows of an earlier release

def _position(conn: sa.Connection, name: str) -> tuple[datetime | None, str] | None:
    row = conn.execute(sa.select(audit_cursors.c.position).where(audit_cursors.c.name == name)).first()
    if not row:
        return None
    at, _, key = row[0].partition("|")
    return datetime.fromisoformat(at), key


def _after(col_at: Any, col_key: Any, at: datetime | None, key: str) -> Any:
    if at is None:
        return sa.true()
    return sa.or_(col_at > at, sa.and_(col_at == at, col_key > key))


def _save(conn: sa.Connection, name: str, at: datetime, key: str) -> None:
    conn.execute(audit_cursors.update().where(audit_cursors.c.name == name).values(
        position=f"{as_utc(at).isoformat()}|{key}"))


def _recorded(conn: sa.Connection, entries: list[AuditEntry]) -> set[tuple[str, str]]:
    """(data_ref, detail) of those entries' records already in the log (written with the change)."""
    refs = sorted({e.data_ref for e in entries if e.data_ref})
    found: set[tuple[str, str]] = set()
    for i in range(0, len(refs), 500):
        found |= {(r.data_ref, r.detail) for r in conn.execute(sa.select(A.data_ref, A.detail).where(
            A.data_ref.in_(refs[i:i + 500]), A.actor == ACTOR))}
    return found


def pending(store: Store) -> bool:
    """Whether the copying job of an earlier release left cursors (rows may wait to be copied)."""
    with store.engine.connect() as conn:
        return bool(conn.execute(sa.select(sa.func.count()).select_from(audit_cursors)
                                 .where(audit_cursors.c.name.in_(CURSORS))).scalar_one())


def catch_up(store: Store, limit: int = 2000) -> int:
    """Copy what an earlier release left to be copied into the audit log; how many records were written.

    Reads after the old job's cursors; a row whose record is already in the log is skipped, so a
    row written since the upgrade (recorded with its change) is never recorded twice. Records and
    cursors move in one transaction. When nothing is left after any cursor the cursors are deleted
    and this does nothing from then on.
    """
    if not pending(store):
        return 0
    written = 0
    with AuditLog(store).transaction() as conn:
        left = False
        pos = _position(conn, "share_decisions")
        if pos is not None:
            rows = conn.execute(sa.select(share_decisions).where(_after(SD.decided_at, SD.decision_id, *pos))
                                .order_by(SD.decided_at, SD.decision_id).limit(limit)).all()
            written += _copy(conn, [decision_entry(r._mapping) for r in rows])
            if rows:
                left = True
                _save(conn, "share_decisions", rows[-1].decided_at, rows[-1].decision_id)
        pos = _position(conn, "consent_directives")
        if pos is not None:
            rows = conn.execute(sa.select(consent_directives).where(
                _after(CD.updated_at, CD.directive_id, *pos)).order_by(CD.updated_at, CD.directive_id)
                .limit(limit)).all()
            written += _copy(conn, [consent_entry(r._mapping) for r in rows])
            if rows:
                left = True
                _save(conn, "consent_directives", rows[-1].updated_at, rows[-1].directive_id)
        pos = _position(conn, "recalls")
        if pos is not None:
            rows = conn.execute(sa.select(deliveries).where(
                DL.kind == "recall", _after(DL.created_at, DL.delivery_id, *pos))
                .order_by(DL.created_at, DL.delivery_id).limit(limit)).all()
            keys = sealer_of(conn)
            written += _copy(conn, [recall_entry(r._mapping, payloads.body(keys, r.delivery_id, r.payload))
                                    for r in rows])
            if rows:
                left = True
                _save(conn, "recalls", rows[-1].created_at, rows[-1].delivery_id)
        if not left:
            conn.execute(audit_cursors.delete().where(audit_cursors.c.name.in_(CURSORS)))
    return written


def _copy(conn: sa.Connection, entries: list[AuditEntry]) -> int:
    if not entries:
        return 0
    have = _recorded(conn, entries)
    return append_in(conn, [e for e in entries if (e.data_ref, canonical_detail(e.detail)) not in have])
