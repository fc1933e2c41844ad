"""Appending to the audit chain inside a transaction: checking an entry, chaining and inserting records,
dead-lettering what the checks refuse. :class:`hub.governance.audit.AuditLog` writes through these; the
sharing step calls :func:`append_in` in its own transaction."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.core.logging import get_logger
from hub.core.privacy import scrub_text
from hub.db.schema import audit_anchors, audit_dead_letters, audit_log
from hub.db.store import as_utc, utcnow
from hub.governance.audit_records import (
    ACTIONS,
    GENESIS,
    Anchor,
    AuditEntry,
    canonical_detail,
    check_detail,
    compute_hash,
)

log = get_logger(__name__)

# Arbitrary constant key for pg_advisory_xact_lock ("audit" in ASCII); no other hub lock uses it.
PG_LOCK_KEY = 0x6175646974


def _hub_id(value: str | None) -> str | None:
    """An id for a dead letter: left out when it is shaped like a personal identifier."""
    return value if value is None or scrub_text(value) == value else None


def dead_letter(e: AuditEntry, reason: str) -> dict[str, Any]:
    return {"failed_at": utcnow(), "action": str(e.action)[:40], "actor": (_hub_id(e.actor) or "withheld")[:200],
            "subject_household": _hub_id(e.subject_household), "subject_child": _hub_id(e.subject_child),
            "data_ref": _hub_id(e.data_ref), "reason": scrub_text(reason)}


def prepare(e: AuditEntry) -> dict[str, Any]:
    """The columns of an entry's record, checked (ValueError: an unknown action, no actor, personal data)."""
    if e.action not in ACTIONS:
        raise ValueError(f"unknown audit action {e.action!r}; known: {', '.join(sorted(ACTIONS))} "
                         "(add one with hub.audit.register_action)")
    if not e.actor:
        raise ValueError("an audit record needs an actor (user id or system component)")
    if e.detail is not None and not isinstance(e.detail, Mapping):
        raise ValueError("audit detail must be a JSON object")
    for name in ("actor", "purpose", "legal_basis", "source"):  # subjects and data_ref are the hub's own ids
        value = getattr(e, name)
        if value is not None and scrub_text(str(value)) != str(value):
            raise ValueError(f"audit {name} looks like an NHS number, UPN or date of birth; audit records "
                             "name people by the hub's pseudonymous ids only")
    check_detail(dict(e.detail or {}))
    return {
        "actor": e.actor, "actor_role": e.actor_role or "", "action": e.action,
        "subject_household": e.subject_household, "subject_child": e.subject_child,
        "data_ref": e.data_ref, "purpose": e.purpose, "legal_basis": e.legal_basis,
        "detail": canonical_detail(e.detail), "source": e.source,
    }


def chain(conn: Connection, prepared: list[dict[str, Any]],
          anchor_every: int) -> tuple[list[dict[str, Any]], list[Anchor]]:
    """Chain and insert prepared records (an anchor every ``anchor_every``); the caller holds the audit write lock."""
    last = conn.execute(sa.select(audit_log.c.seq, audit_log.c.hash, audit_log.c.recorded_at)
                        .order_by(audit_log.c.seq.desc()).limit(1)).first()
    seq, prev, last_at = (int(last.seq), last.hash, as_utc(last.recorded_at)) if last else (0, GENESIS, None)
    now = utcnow()
    at = max(now, last_at) if last_at is not None else now
    rows = []
    anchors: list[Anchor] = []
    for fields in prepared:
        seq += 1
        row = {**fields, "seq": seq, "recorded_at": at, "prev_hash": prev}
        row["hash"] = prev = compute_hash(row, row["prev_hash"])
        rows.append(row)
        if anchor_every > 0 and seq % anchor_every == 0:
            anchors.append(Anchor(seq, row["hash"], at))
    conn.execute(audit_log.insert(), rows)
    if anchors:
        conn.execute(audit_anchors.insert(),
                     [{"seq": a.seq, "hash": a.hash, "anchored_at": a.anchored_at} for a in anchors])
    return rows, anchors


def append_in(conn: Connection, entries: Iterable[AuditEntry], *, anchor_every: int = 100) -> int:
    """Append records in the caller's transaction, chained in the order given; how many were chained.

    The writer of the sharing step: its decision, delivery and consent rows and their audit records
    commit together or not at all. A database error (the insert refused) propagates, so the caller's
    transaction rolls back and nothing of the change remains. A record its own checks refuse (personal
    data in its detail, an unknown action) is dead-lettered in the same transaction, as
    :meth:`AuditLog.record_many` does, so the trace of the change is still kept with it. On SQLite the
    caller's transaction must already hold the write lock (it has written); on PostgreSQL the audit
    lock is taken here, until the commit, so the chain's order is the commit order.
    """
    prepared: list[dict[str, Any]] = []
    dead: list[dict[str, Any]] = []
    for e in entries:
        try:
            prepared.append(prepare(e))
        except ValueError as exc:
            dead.append(dead_letter(e, str(exc)))
    if not prepared and not dead:
        return 0
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("select pg_advisory_xact_lock(:k)"), {"k": PG_LOCK_KEY})
    if prepared:
        chain(conn, prepared, anchor_every)
    if dead:
        conn.execute(audit_dead_letters.insert(), dead)
        log.warning("audit.dead_lettered", records=len(dead), reasons=sorted({d["reason"] for d in dead}))
    return len(prepared)
