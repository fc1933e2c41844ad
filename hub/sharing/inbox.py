"""What agencies and families read: the agency inbox and acknowledgements, family copies, recipient states."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from hub.core.errors import NotFoundError, ValidationError
from hub.db.schema import deliveries, share_decisions
from hub.db.sealed import Sealer, sealer
from hub.db.store import Store, as_utc, utcnow
from hub.sharing import payloads
from hub.sharing.alerts import resolve
from hub.sharing.ledger import MAYBE_SENT
from hub.sharing.rounds import latest_share
from hub.sharing.webhooks import load_webhooks

DL = deliveries.c
SD = share_decisions.c
FAMILY_KINDS = ("family", "young_person")
MAY_HAVE_BEEN_RECEIVED = "may have been received"
UNREAD_IN_INBOX = "in the agency's inbox, not yet read"


def _cursor(created_at: datetime, delivery_id: str) -> str:
    raw = json.dumps([as_utc(created_at).isoformat(), delivery_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _uncursor(cursor: str) -> tuple[datetime, str]:
    try:
        ts, did = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(ts), str(did)
    except (ValueError, TypeError) as exc:
        raise ValidationError("cursor is not one this API issued", title="Invalid cursor") from exc


def _view(r: Any, seal: Sealer) -> dict[str, Any]:
    return {"delivery_id": r.delivery_id, "kind": r.kind, "state": r.state, "channel": r.channel,
            "created_at": as_utc(r.created_at).isoformat(),
            "delivered_at": as_utc(r.delivered_at).isoformat() if r.delivered_at else None,
            "acknowledged_at": as_utc(r.acknowledged_at).isoformat() if r.acknowledged_at else None,
            "content": payloads.body(seal, r.delivery_id, r.payload)}


def inbox(store: Store, agency_id: str, *, cursor: str | None = None, limit: int = 50,
          now: datetime | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """An agency's shares and notices, oldest first.

    For an agency without a webhook, reading a queued one delivers it (channel inbox). An agency with a
    webhook receives its shares there, into its own system: reading the inbox first shows a queued one as
    on its way and leaves it to the webhook (one routed to the inbox before the webhook was set is delivered).
    """
    now = now or utcnow()
    conds = [DL.agency_id == agency_id, DL.state.in_(("queued", "delivered", "acknowledged"))]
    if cursor:
        ts, did = _uncursor(cursor)
        conds.append(sa.tuple_(DL.created_at, DL.delivery_id) > sa.tuple_(sa.literal(ts, DL.created_at.type),
                                                                           sa.literal(did)))
    q = sa.select(deliveries).where(*conds).order_by(DL.created_at, DL.delivery_id).limit(limit + 1)
    with store.engine.begin() as conn:
        rows = conn.execute(q).all()
        nxt = None
        if len(rows) > limit:
            rows = rows[:limit]
            nxt = _cursor(rows[-1].created_at, rows[-1].delivery_id)
        queued = [r for r in rows if r.state == "queued"]
        hooked = bool(queued) and agency_id in load_webhooks(store)
        fresh = [r.delivery_id for r in queued if not hooked or r.channel == "inbox"]
        if fresh:
            conn.execute(deliveries.update().where(DL.delivery_id.in_(fresh), DL.state == "queued").values(
                state="delivered", channel="inbox", delivered_at=now,
                receipt=json.dumps({"inbox_read": now.isoformat()})))
            rows = conn.execute(sa.select(deliveries).where(DL.delivery_id.in_([r.delivery_id for r in rows]))
                                .order_by(DL.created_at, DL.delivery_id)).all()
    seal = sealer(store)
    seal.prefetch(r.payload for r in rows)  # a page's children's keys in one query
    return [_view(r, seal) for r in rows], nxt


def homes_of(store: Store, delivery_ids: list[str]) -> dict[tuple[str, str], list[str]]:
    """(household, child) → the given deliveries of theirs (an inbox read is audited per household)."""
    out: dict[tuple[str, str], list[str]] = {}
    with store.engine.connect() as conn:
        for r in conn.execute(sa.select(DL.household_id, DL.child_id, DL.delivery_id).where(
                DL.delivery_id.in_(delivery_ids))):
            out.setdefault((r.household_id, r.child_id), []).append(r.delivery_id)
    return out


def acknowledge(store: Store, agency_id: str, delivery_id: str, now: datetime | None = None) -> dict[str, Any]:
    """Record the agency's acknowledgement (idempotent); an ``ack_overdue`` alert about the share is resolved."""
    now = now or utcnow()
    with store.engine.begin() as conn:
        row = conn.execute(sa.select(deliveries).where(DL.delivery_id == delivery_id,
                                                       DL.agency_id == agency_id)).first()
        if row is None:
            raise NotFoundError("no such delivery for this agency")
        if row.state in ("queued", "delivered"):
            conn.execute(deliveries.update().where(DL.delivery_id == delivery_id).values(
                state="acknowledged", acknowledged_at=now, delivered_at=row.delivered_at or now,
                channel=row.channel or "inbox"))
            resolve(conn, f"ack_overdue:{delivery_id}", f"{row.service} acknowledged the share on {now:%d %b %Y %H:%M}",
                    now)
        elif row.state != "acknowledged":
            raise ValidationError(f"this delivery is {row.state} and cannot be acknowledged",
                                  title="Not acknowledgeable")
        row = conn.execute(sa.select(deliveries).where(DL.delivery_id == delivery_id)).one()
    return _view(row, sealer(store))


def family_copies(store: Store, household_id: str) -> list[dict[str, Any]]:
    """Copies delivered into the family's own view (parents and the young person); a recalled copy is not."""
    q = (sa.select(deliveries).where(DL.household_id == household_id, DL.recipient_kind.in_(FAMILY_KINDS),
                                     DL.state.in_(("delivered", "acknowledged")), DL.kind != "recall")
         .order_by(DL.created_at, DL.delivery_id))
    with store.engine.connect() as conn:
        rows = conn.execute(q).all()
    seal = sealer(store)
    return [_view(r, seal) | {"child_id": r.child_id, "recipient": r.recipient_kind} for r in rows]


def recipient_states(store: Store, household_id: str, child_id: str | None = None) -> list[dict[str, Any]]:
    """Per information and recipient: the current decision and where its delivery is.

    A named professional decided apart from their service has a row of their own
    (``recipient_professional`` set); the service's row stands for everyone else in it. A share
    whose POST went out with no answer (``sending``, ``in_doubt``) has the ``note`` "may have been
    received"; one waiting unread in an agency inbox (``queued``, ``channel`` inbox) "in the agency's
    inbox, not yet read".
    """
    conds = [SD.household_id == household_id, SD.current.is_(True)]
    if child_id:
        conds.append(SD.child_id == child_id)
    j = share_decisions.join(deliveries, latest_share(share_decisions), isouter=True)
    q = (sa.select(SD.decision_id, SD.child_id, SD.information_id, SD.information_version, SD.record_type,
                   SD.producer_service, SD.recipient_key, SD.recipient_kind, SD.recipient_service, SD.outcome,
                   SD.rule_id, SD.basis, DL.delivery_id, DL.state, DL.channel, DL.why, DL.delivered_at,
                   DL.acknowledged_at)
         .select_from(j).where(*conds).order_by(SD.child_id, SD.information_id, SD.recipient_key))
    with store.engine.connect() as conn:
        out = []
        for r in conn.execute(q):
            d = dict(r._mapping)
            key = d["recipient_key"]
            d["recipient_professional"] = key.rsplit(":", 1)[1] if key.startswith("professional:") else None
            for k in ("delivered_at", "acknowledged_at"):
                d[k] = as_utc(d[k]).isoformat() if d[k] else None
            d["note"] = MAY_HAVE_BEEN_RECEIVED if d["state"] in MAYBE_SENT else (
                UNREAD_IN_INBOX if d["state"] == "queued" and d["channel"] == "inbox" else None)
            out.append(d)
    return out
