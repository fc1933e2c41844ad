"""Shares withdrawn while their POST was in flight: recorded as delivered, and followed by notices."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from hub.core.logging import get_logger
from hub.db.schema import deliveries
from hub.db.sealed import sealer_of
from hub.sharing import payloads
from hub.sharing.model import delivery_row_id, professional_key
from hub.sharing.rows import PROFESSIONAL_NOTICE, SERVICE_NOTICE

log = get_logger(__name__)
DL = deliveries.c


def _notice_after(conn: sa.Connection, row: Any, sent: dict[str, Any], recipient_key: str,
                  professional_id: str | None, now: datetime) -> dict[str, Any]:
    """Queue a withdrawal notice (next round) for a copy that went out while it was being withdrawn; its row."""
    top = conn.execute(sa.select(sa.func.max(DL.round)).where(
        DL.information_id == row.information_id, DL.information_version == row.information_version,
        DL.recipient_key == recipient_key, DL.child_id == row.child_id)).scalar()
    round_ = (top if top is not None else -1) + 1
    did = delivery_row_id(row.information_id, row.information_version, recipient_key, "withdrawal_notice", round_,
                          row.child_id)
    body = {**sent, "delivery_id": did, "kind": "withdrawal_notice",
            "notice": PROFESSIONAL_NOTICE if professional_id else SERVICE_NOTICE}
    body.pop("not_for_professionals", None)
    if professional_id:
        body["recipient"] = {**body["recipient"], "professional_id": professional_id}
    notice = dict(
        delivery_id=did, kind="withdrawal_notice", decision_id=row.decision_id, information_id=row.information_id,
        information_version=row.information_version, recipient_key=recipient_key,
        recipient_kind=row.recipient_kind, agency_id=row.agency_id, service=row.service, child_id=row.child_id,
        household_id=row.household_id, state="queued",
        payload=payloads.seal(sealer_of(conn), did, row.child_id, payloads.dump(body)),
        attempts=0, next_attempt_at=now, created_at=now, queued_at=now, round=round_)
    conn.execute(deliveries.insert().values(**notice))
    return notice


def notice_for_maybe_sent(conn: sa.Connection, row: Any, now: datetime) -> dict[str, Any]:
    """A withdrawal notice (next round) for a share that may have been received (``sending`` or ``in_doubt``);
    the notice's row."""
    body = payloads.body(sealer_of(conn), row.delivery_id, row.payload)
    professional_id = body.get("recipient", {}).get("professional_id")
    notice = _notice_after(conn, row, body, row.recipient_key, professional_id, now)
    log.warning("sharing.withdrawn_in_doubt", delivery_id=row.delivery_id)
    return notice


def follow_raced(conn: sa.Connection, sent: dict[str, dict[str, Any]], values: dict[str, dict[str, Any]],
                 now: datetime) -> list[dict[str, Any]]:
    """Shares delivered while the sharing step withdrew them: record the truth, and follow with notices
    (their rows are returned, for the caller to audit in the same transaction).

    A share is claimed, then sent; if consent is withdrawn in between, the sharing step cancels the
    row (or, for a named professional refused, lists them in a new payload) but the copy is already
    on its way. The row is marked delivered (it was), and a withdrawal notice follows: to the
    service when the share was cancelled, to each professional the sent copy did not exclude.
    """
    notices: list[dict[str, Any]] = []
    keys = sealer_of(conn)
    rows = conn.execute(sa.select(deliveries).where(DL.delivery_id.in_(list(sent)))).all()
    keys.prefetch(row.payload for row in rows if row.state == "delivered")  # their children's keys at once
    for row in rows:
        body = sent[row.delivery_id]
        if row.state == "cancelled":
            conn.execute(deliveries.update().where(DL.delivery_id == row.delivery_id, DL.state == "cancelled")
                         .values(values[row.delivery_id] | {"closed_at": None, "why": None}))
            notices.append(_notice_after(conn, row, body, row.recipient_key, None, now))
        elif row.state == "delivered" and (held := payloads.body(keys, row.delivery_id, row.payload)) != body:
            now_not_for = set(held.get("not_for_professionals", ()))
            for pid in sorted(now_not_for - set(body.get("not_for_professionals", ()))):
                notices.append(_notice_after(conn, row, body, professional_key(row.agency_id, row.service, pid),
                                             pid, now))
    if notices:
        log.warning("sharing.withdrawn_in_flight", notices=len(notices))
    return notices
