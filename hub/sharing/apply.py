"""The one place a sharing plan (:mod:`hub.sharing.ledger`) meets the database.

Updates to stored rows run at once; new decision and delivery rows go to a :class:`Inserts` the
caller writes when it chooses (one ``executemany`` per table for a whole pass), or at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.db.schema import deliveries, share_decisions
from hub.db.sealed import sealer_of
from hub.governance.audit import AuditEntry
from hub.sharing import audit_trail, payloads
from hub.sharing.inflight import notice_for_maybe_sent
from hub.sharing.ledger import (
    MAYBE_SENT,
    NOTICE,
    RECALL,
    RECALL_REASON,
    AddDelivery,
    Cancel,
    Plan,
    Recall,
    RecordDecision,
    Requeue,
    Rerender,
    RetireDecision,
    Rewithhold,
)
from hub.sharing.rows import RowContext, decision_row, delivery_row, payload

SD = share_decisions.c
DL = deliveries.c


@dataclass
class Inserts:
    """New rows waiting to be written together, with the audit records of everything the pass changed.

    :meth:`write` appends the audit records last, in the same transaction as the rows: on PostgreSQL
    the audit chain's lock is then held only from there to the commit.
    """

    decisions: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    audit: list[AuditEntry] = field(default_factory=list)

    def write(self, conn: Connection) -> None:
        if self.decisions:
            conn.execute(share_decisions.insert(), self.decisions)
        if self.deliveries:
            conn.execute(deliveries.insert(), payloads.sealed_rows(conn, self.deliveries))
        audit_trail.write(conn, self.audit)
        self.decisions, self.deliveries, self.audit = [], [], []


def apply_plan(conn: Connection, plan: Plan, ctx: RowContext, inserts: Inserts | None = None) -> None:
    """Apply ``plan`` for the child of ``ctx``; without ``inserts`` its new rows are written at once too."""
    pending = Inserts() if inserts is None else inserts
    for a in plan:
        if isinstance(a, RecordDecision):
            row = decision_row(a.info, a.target, a.decision, a.decided_for, a.seq, ctx)
            pending.decisions.append(row)
            pending.audit.append(audit_trail.decision_entry(row))
        elif isinstance(a, AddDelivery):
            row = delivery_row(a.info, a.target, a.decision, a.decision_id, a.kind, ctx, a.not_for, a.round)
            pending.deliveries.append(row)
            if a.kind == NOTICE:  # a share (queued or withheld) is recorded with its decision
                pending.audit.append(audit_trail.notice_entry(row))
        else:
            _update(conn, a, ctx, pending.audit)
    if inserts is None:
        pending.write(conn)


RECALL_NOTICE = ("This information was shared from a record linked to the wrong child in error. Withdraw your copy "
                 "and do not use it for this child; review it under your records policy.")


def _recall(conn: Connection, a: Recall, now: datetime, audit: list[AuditEntry]) -> None:
    """A recall notice after the share ``a.share_id``; a family copy is withdrawn from the family's view."""
    share = conn.execute(sa.select(deliveries).where(DL.delivery_id == a.share_id)).first()
    if share is None:
        return
    keys = sealer_of(conn)
    body = {**payloads.body(keys, share.delivery_id, share.payload), "delivery_id": a.delivery_id, "kind": RECALL,
            "reason": RECALL_REASON, "recalls": a.share_id, "notice": RECALL_NOTICE}
    body.pop("not_for_professionals", None)
    family = dict(state="delivered", channel="family_view", delivered_at=now, queued_at=now, next_attempt_at=None,
                  receipt=json.dumps({"family_view": now.isoformat()}))
    row = dict(
        delivery_id=a.delivery_id, kind=RECALL, decision_id=share.decision_id, information_id=share.information_id,
        information_version=share.information_version, recipient_key=share.recipient_key,
        recipient_kind=share.recipient_kind, agency_id=share.agency_id, service=share.service,
        child_id=share.child_id, household_id=share.household_id, why=RECALL_REASON,
        payload=payloads.seal(keys, a.delivery_id, share.child_id, payloads.dump(body)), attempts=0, created_at=now,
        round=a.round, **(family if a.family else dict(state="queued", queued_at=now, next_attempt_at=now)))
    conn.execute(deliveries.insert().values(**row))
    audit.append(audit_trail.recall_entry(row, body))
    if a.family:  # the family's copy leaves their view
        conn.execute(deliveries.update().where(DL.delivery_id == a.share_id).values(
            state="recalled", why=RECALL_REASON, closed_at=now))


def _update(conn: Connection, a: RetireDecision | Requeue | Cancel | Rewithhold | Rerender | Recall,
            ctx: RowContext, audit: list[AuditEntry]) -> None:
    """Change a stored row; a cancellation or recall adds its audit record to ``audit`` (a requeue, a
    re-withholding and a re-addressed share are recorded with the decision that moved them)."""
    now = ctx.now
    if isinstance(a, Recall):
        _recall(conn, a, now, audit)
    elif isinstance(a, RetireDecision):
        conn.execute(share_decisions.update().where(SD.decision_id == a.decision_id).values(current=False))
    elif isinstance(a, Requeue):
        conn.execute(deliveries.update().where(
            DL.delivery_id == a.delivery_id, DL.state.in_(("withheld", "cancelled"))).values(
            state="queued", why=None, decision_id=a.decision_id, queued_at=now, next_attempt_at=now,
            closed_at=None, attempts=0, last_error=None, round=a.round,
            payload=payloads.seal(sealer_of(conn), a.delivery_id, ctx.child_id, payload(
                a.info, a.target, a.decision_id, a.decision, "share", ctx.child_id, a.delivery_id, a.not_for))))
    elif isinstance(a, Cancel):
        _cancel(conn, a, now, audit)
    elif isinstance(a, Rewithhold):
        conn.execute(deliveries.update().where(DL.delivery_id == a.delivery_id).values(
            why=a.why, decision_id=a.decision_id))
    else:
        conn.execute(deliveries.update().where(DL.delivery_id == a.delivery_id, DL.state == "queued").values(
            payload=payloads.seal(sealer_of(conn), a.delivery_id, ctx.child_id, payload(
                a.info, a.target, a.decision_id, a.decision, "share", ctx.child_id, a.delivery_id, a.not_for))))


def _cancel(conn: Connection, a: Cancel, now: datetime, audit: list[AuditEntry]) -> None:
    """A queued delivery is cancelled; a share that may have been received is closed in doubt instead.

    The plan was made from what was read at the start of the pass: a deliverer may have marked the
    share ``sending`` since. Such a share is closed in doubt too, and (a refusal, so the plan has no
    notice for it) followed by a withdrawal notice here.
    """
    values: dict[str, Any] = dict(why=a.why, closed_at=now)
    if a.decision_id is not None:
        values["decision_id"] = a.decision_id
    if not a.in_doubt:
        done = conn.execute(deliveries.update().where(DL.delivery_id == a.delivery_id, DL.state == "queued")
                            .values(state="cancelled", **values).returning(
            DL.delivery_id, DL.household_id, DL.child_id, DL.information_id, DL.information_version,
            DL.recipient_key, DL.kind)).first()
        if done is not None:
            audit.append(audit_trail.cancel_entry(done._mapping, a.why, a.decision_id))
            return
        if a.decision_id is None or a.key[3] != "share":
            return
    closing = sa.and_(DL.delivery_id == a.delivery_id, DL.state.in_(MAYBE_SENT), DL.closed_at.is_(None))
    row = conn.execute(sa.select(deliveries).where(closing)).first()
    if row is None:
        return
    # closed: never sent again; next_attempt_at keeps the claim of a POST still in hand (its notice waits)
    conn.execute(deliveries.update().where(closing).values(state="in_doubt", **values))
    audit.append(audit_trail.cancel_entry(row._mapping, a.why, a.decision_id, in_doubt=True))
    if not a.in_doubt:
        audit.append(audit_trail.notice_entry(notice_for_maybe_sent(conn, row, now)))
