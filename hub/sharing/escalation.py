"""Escalating shares nobody acknowledged, and closing delivery alerts whose condition cleared.

A professional share counts as received only when the agency acknowledges it. Within
``HUB_SHARING_ACK_HOURS`` hours (default 72) of reaching the agency it must be acknowledged, or
the child's coordinator gets one ``ack_overdue`` alert:

* a share delivered to a webhook (or read in the agency inbox): counted from ``delivered_at``;
* a share waiting **unread** in the agency inbox (an agency with no webhook; state ``queued``,
  channel ``inbox``): counted from ``queued_at``, when it became readable there. Unread is not
  delivered: the share lists and readiness say "in the agency's inbox, not yet read".

The same pass resolves delivery alerts whose condition cleared (:func:`resolve_delivery_alerts`):
``ack_overdue`` once the share is acknowledged (or cancelled before anyone read it), and
``delivery_failed`` once the information reached that recipient after all (a later round or version
delivered). An acknowledgement in the inbox resolves its alert at once too.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.core.settings import sharing_settings
from hub.db.schema import alerts, deliveries
from hub.db.sealed import sealer_of
from hub.db.store import Store, as_utc
from hub.sharing import payloads
from hub.sharing.alerts import coordinator_of, opened, raise_alert, resolve
from hub.sharing.inbox import FAMILY_KINDS, UNREAD_IN_INBOX

DL = deliveries.c
A = alerts.c
#: the alerts about one share, each keyed ``<kind>:<delivery id>``
DELIVERY_KINDS = ("ack_overdue", "delivery_failed")


def ack_hours() -> float:
    return sharing_settings().ack_hours


def _overdue(conn: Connection, limit: datetime) -> list[Any]:
    """Professional shares past their window and not escalated: delivered unacknowledged, or unread in the inbox."""
    professional = sa.and_(DL.kind == "share", DL.recipient_kind.not_in(FAMILY_KINDS), DL.escalated_at.is_(None))
    delivered = sa.and_(DL.state == "delivered", DL.delivered_at <= limit)
    unread = sa.and_(DL.state == "queued", DL.channel == "inbox", DL.closed_at.is_(None),
                     sa.func.coalesce(DL.queued_at, DL.created_at) <= limit)
    return list(conn.execute(sa.select(deliveries).where(professional, sa.or_(delivered, unread)).limit(500)))


def _ack_overdue_alert(conn: Connection, r: Any, now: datetime) -> bool:
    agency, service = coordinator_of(conn, r.child_id)
    title = payloads.body(sealer_of(conn), r.delivery_id, r.payload)["information"].get("title") or r.information_id
    if r.state == "queued":  # unread in the agency inbox
        since = as_utc(r.queued_at or r.created_at)
        message = f"{r.service} has not read '{title}': {UNREAD_IN_INBOX} since {since:%d %b %Y %H:%M}"
        details = {"delivery_id": r.delivery_id, "recipient": r.service, "channel": "inbox", "unread": True,
                   "in_inbox_since": since.isoformat()}
    else:
        message = f"{r.service} has not acknowledged '{title}' delivered {as_utc(r.delivered_at):%d %b %Y %H:%M}"
        details = {"delivery_id": r.delivery_id, "recipient": r.service,
                   "delivered_at": as_utc(r.delivered_at).isoformat()}
    return raise_alert(conn, key=f"ack_overdue:{r.delivery_id}", kind="ack_overdue", household_id=r.household_id,
                       child_id=r.child_id, to_agency_id=agency, to_service=service, now=now, message=message,
                       details=details)


def escalate_unacknowledged(store: Store, now: datetime, hours: float | None = None) -> int:
    """Alert the coordinator once for each professional share not acknowledged within N hours; resolve cleared
    delivery alerts. Returns how many alerts were raised."""
    limit = now - timedelta(hours=ack_hours() if hours is None else hours)
    raised = 0
    with store.engine.begin() as conn:
        for r in _overdue(conn, limit):
            raised += _ack_overdue_alert(conn, r, now)
            conn.execute(deliveries.update().where(DL.delivery_id == r.delivery_id).values(escalated_at=now))
        resolve_delivery_alerts(conn, now)
    return raised


def _when(at: datetime | None) -> str:
    return f"{as_utc(at):%d %b %Y %H:%M}" if at is not None else "since"


def _ack_cleared(row: Any) -> str | None:
    """Why an ``ack_overdue`` alert about this share no longer stands (None: it still does)."""
    if row is None:
        return "the share is no longer held by the hub"
    if row.state == "acknowledged":
        return f"{row.service} acknowledged the share on {_when(row.acknowledged_at)}"
    if row.state in ("cancelled", "withheld"):
        return f"the share was withdrawn before {row.service} acknowledged it ({row.why or row.state})"
    return None


def _delivered_later(conn: Connection, row: Any) -> Any:
    """A later share of the same information (this or a newer version) that reached the same recipient."""
    return conn.execute(sa.select(DL.delivered_at, DL.acknowledged_at).where(
        DL.information_id == row.information_id, DL.information_version >= row.information_version,
        DL.recipient_key == row.recipient_key, DL.kind == "share",
        DL.state.in_(("delivered", "acknowledged"))).order_by(DL.delivered_at).limit(1)).first()


def _open_delivery_alerts(conn: Connection, kind: str, cleared: tuple[str, ...] | None) -> list[tuple[str, Any]]:
    """Every open alert of ``kind`` keyed ``<kind>:<delivery id>``, with its share's row (None when the hub no
    longer holds it); with ``cleared``, only those whose share is gone or in one of these states. No cap: all
    of them, however many are open (the share is found by the alert's key, in one query, nothing opened)."""
    prefix = f"{kind}:"
    j = alerts.outerjoin(deliveries, DL.delivery_id == sa.func.substr(A.alert_key, len(prefix) + 1))
    q = (sa.select(A.alert_key, DL.delivery_id, DL.state, DL.service, DL.acknowledged_at, DL.why,
                   DL.information_id, DL.information_version, DL.recipient_key).select_from(j)
         .where(A.kind == kind, A.resolved_at.is_(None), A.alert_key.startswith(prefix, autoescape=True))
         .order_by(A.alert_id))
    if cleared is not None:
        q = q.where(sa.or_(DL.delivery_id.is_(None), DL.state.in_(cleared)))
    return [(r.alert_key, r if r.delivery_id is not None else None) for r in conn.execute(q)]


def _other_delivery_alerts(conn: Connection) -> list[tuple[str, str, Any]]:
    """Open delivery alerts not keyed by their share (raised by hand): their share is read from the details."""
    keyed = sa.or_(*(sa.and_(A.kind == k, A.alert_key.startswith(f"{k}:", autoescape=True)) for k in DELIVERY_KINDS))
    q = sa.select(A.alert_key, A.kind, A.details).where(A.kind.in_(DELIVERY_KINDS), A.resolved_at.is_(None),
                                                        sa.not_(keyed)).order_by(A.alert_id)
    seal = sealer_of(conn)
    out = []
    for r in conn.execute(q).all():
        did = opened(seal, dict(r._mapping))["details"].get("delivery_id")
        row = conn.execute(sa.select(deliveries).where(DL.delivery_id == did)).first() if did else None
        out.append((r.alert_key, r.kind, row))
    return out


def _failed_cleared(conn: Connection, row: Any) -> str | None:
    """Why a ``delivery_failed`` alert about this share no longer stands (None: it still does)."""
    if row is None:
        return "the share is no longer held by the hub"
    later = _delivered_later(conn, row)
    return f"delivered to {row.service} on {_when(later.delivered_at)}" if later is not None else None


def resolve_delivery_alerts(conn: Connection, now: datetime) -> int:
    """Resolve ``ack_overdue`` and ``delivery_failed`` alerts whose condition cleared, every open one however
    many there are; returns how many."""
    checks = [(key, "ack_overdue", row) for key, row in
              _open_delivery_alerts(conn, "ack_overdue", ("acknowledged", "cancelled", "withheld"))]
    checks += [(key, "delivery_failed", row) for key, row in _open_delivery_alerts(conn, "delivery_failed", None)]
    done = 0
    for key, kind, row in checks + _other_delivery_alerts(conn):
        reason = _ack_cleared(row) if kind == "ack_overdue" else _failed_cleared(conn, row)
        if reason is not None:
            done += resolve(conn, key, reason, now)
    return done
