"""Delivering permitted shares: agency webhooks, the agency inbox, the family's own view, receipts, escalation.

Configuring agency webhooks
    Either rows in the ``agency_webhooks`` table (agency_id, url, secret, active), or a JSON file named
    by ``HUB_WEBHOOKS_FILE``::

        {"7A6": {"url": "https://abuhb.example/hub-inbox", "secret": "a-long-random-shared-secret"}}

    The file wins for an agency in both; it is re-read when it changes. An agency with no webhook
    reads its shares from ``GET /v1/agencies/{agency_id}/inbox`` instead (a read marks them delivered)
    and acknowledges each with ``POST /v1/agencies/{agency_id}/inbox/{delivery_id}/ack``.

What a webhook receives (``POST``, JSON)
    Least data: the delivery id and kind (``share`` or ``withdrawal_notice``), the pseudonymous hub
    child id, the information's metadata (record type, kind, category, issue time, producing agency
    and service, report / plan kind, title and document reference — never free text or any other
    identifier), the recipient service and the decision's basis / rule / rule-set version, and
    ``sent_at``. Named professionals (see :mod:`hub.sharing.decisions`): a share to the service
    may carry ``not_for_professionals`` (ids of professionals it must not be shown to); a share or
    notice whose ``recipient.professional_id`` is set is about that professional alone — a share
    gives them access of their own (a notice to the service does not take it away), a notice takes
    all their access away until a later share covers them again. A notice then a later share for
    the same recipient (consent withdrawn, then given again) each arrive as deliveries of their
    own. Headers: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body with the
    shared secret>``, ``X-Hub-Timestamp`` (unix seconds; reject old ones), ``Idempotency-Key`` (the
    delivery id: the same for every attempt) and ``X-Hub-Delivery-Kind``. Any 2xx is the receipt
    (status and the first 500 characters of the body are recorded); anything else is retried with
    exponential backoff with jitter (a uniform wait between half and all of ``HUB_SHARING_RETRY_BASE``
    s doubling per attempt, capped at an hour)
    up to ``HUB_SHARING_MAX_ATTEMPTS`` attempts (default 8), then the delivery is ``failed`` (dead
    letter) and the coordinator is alerted.

Family copies (parents, young person) are delivered into the family's own view
(``GET /v1/households/{id}/family-copies``). A professional delivery not acknowledged within
``HUB_SHARING_ACK_HOURS`` hours (default 72) raises an ``ack_overdue`` alert to the coordinator.
Before any share is sent, the directives it rests on are checked again: one withdrawn since the
decision cancels it. A share the sharing step withdraws while its POST is in flight has gone all
the same: it is recorded as delivered and a withdrawal notice follows it (to the service, or to
each named professional the copy did not yet exclude).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from hub.core.errors import NotFoundError, ValidationError
from hub.core.logging import get_logger
from hub.core.settings import sharing_settings
from hub.db.store import Store, as_utc, utcnow
from hub.sharing.alerts import coordinator_of, raise_alert
from hub.sharing.model import delivery_row_id, professional_key
from hub.sharing.rows import PROFESSIONAL_NOTICE, SERVICE_NOTICE
from hub.sharing.tables import agency_webhooks, consent_directives, deliveries, latest_share, share_decisions

log = get_logger(__name__)
DL = deliveries.c
SD = share_decisions.c
CD = consent_directives.c
LEASE = timedelta(seconds=60)
INBOX_RECHECK = timedelta(minutes=5)
FAMILY_KINDS = ("family", "young_person")


def max_attempts() -> int:
    return sharing_settings().max_attempts


def ack_hours() -> float:
    return sharing_settings().ack_hours


@dataclass(frozen=True)
class Webhook:
    url: str
    secret: str

    def __repr__(self) -> str:
        return f"Webhook(url={self.url!r}, secret=<redacted>)"


_FILE_CACHE: dict[str, tuple[float, dict[str, Webhook]]] = {}


def _from_file(path: str) -> dict[str, Webhook]:
    p = Path(path)
    try:
        mtime = p.stat().st_mtime
    except OSError:
        log.warning("sharing.webhooks_file_missing", path=path)
        return {}
    cached = _FILE_CACHE.get(path)
    if cached and cached[0] == mtime:
        return cached[1]
    data = json.loads(p.read_text())
    hooks = {str(a): Webhook(str(v["url"]), str(v["secret"])) for a, v in data.items()}
    _FILE_CACHE[path] = (mtime, hooks)
    return hooks


def load_webhooks(store: Store) -> dict[str, Webhook]:
    """Agency id → webhook, from the ``agency_webhooks`` table and ``HUB_WEBHOOKS_FILE``."""
    w = agency_webhooks.c
    with store.engine.connect() as conn:
        hooks = {r.agency_id: Webhook(r.url, r.secret) for r in conn.execute(
            sa.select(agency_webhooks).where(w.active.is_(True)))}
    path = sharing_settings().webhooks_file
    if path:
        hooks.update(_from_file(str(path)))
    return hooks


def set_webhook(store: Store, agency_id: str, url: str, secret: str, active: bool = True) -> None:
    w = agency_webhooks.c
    with store.engine.begin() as conn:
        if conn.execute(sa.select(w.agency_id).where(w.agency_id == agency_id)).first():
            conn.execute(agency_webhooks.update().where(w.agency_id == agency_id).values(
                url=url, secret=secret, active=active))
        else:
            conn.execute(agency_webhooks.insert().values(agency_id=agency_id, url=url, secret=secret, active=active))


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """What a receiving agency does: constant-time comparison of the signature header."""
    return hmac.compare_digest(sign(secret, body), header)


def backoff(attempts: int, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with jitter: uniform(step / 2, step), step = min(1 h, base * 2^(attempts-1))."""
    base = sharing_settings().retry_base
    ceiling = min(3600.0, base * 2 ** max(0, attempts - 1))
    return timedelta(seconds=(rng or random).uniform(ceiling / 2, ceiling))


@dataclass
class DeliveryStats:
    delivered: int = 0
    to_inbox: int = 0
    retried: int = 0
    failed: int = 0
    cancelled: int = 0
    escalated: int = 0
    delivered_ids: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------- claiming

def _claim_due(store: Store, now: datetime, limit: int) -> list[dict[str, Any]]:
    lease_until = now + LEASE + timedelta(microseconds=random.randint(0, 999_999))
    with store.engine.begin() as conn:
        ids = [r[0] for r in conn.execute(sa.select(DL.delivery_id).where(
            DL.state == "queued", DL.next_attempt_at <= now).order_by(DL.next_attempt_at).limit(limit))]
        if not ids:
            return []
        conn.execute(deliveries.update().where(DL.delivery_id.in_(ids), DL.state == "queued",
                                               DL.next_attempt_at <= now).values(next_attempt_at=lease_until))
        q = (sa.select(deliveries, SD.directive_ids).select_from(
            deliveries.join(share_decisions, SD.decision_id == DL.decision_id, isouter=True))
             .where(DL.delivery_id.in_(ids), DL.next_attempt_at == lease_until))
        return [dict(r._mapping) for r in conn.execute(q)]


def _withdrawn(store: Store, rows: list[dict[str, Any]]) -> set[str]:
    """Shares whose consent directives were withdrawn since the decision (cancelled, not sent)."""
    wanted: dict[str, list[str]] = {}
    for r in rows:
        if r["kind"] == "share" and r.get("directive_ids"):
            ids = json.loads(r["directive_ids"])
            if ids:
                wanted[r["delivery_id"]] = ids
    if not wanted:
        return set()
    all_ids = {i for ids in wanted.values() for i in ids}
    with store.engine.connect() as conn:
        gone = {r[0] for r in conn.execute(sa.select(CD.directive_id).where(
            CD.directive_id.in_(all_ids), CD.status != "active"))}
    return {d for d, ids in wanted.items() if gone & set(ids)}


def _notice_after(conn: sa.Connection, row: Any, sent: dict[str, Any], recipient_key: str,
                  professional_id: str | None, now: datetime) -> None:
    """Queue a withdrawal notice (next round) for a copy that went out while it was being withdrawn."""
    top = conn.execute(sa.select(sa.func.max(DL.round)).where(
        DL.information_id == row.information_id, DL.information_version == row.information_version,
        DL.recipient_key == recipient_key)).scalar()
    round_ = (top if top is not None else -1) + 1
    did = delivery_row_id(row.information_id, row.information_version, recipient_key, "withdrawal_notice", round_)
    body = {**sent, "delivery_id": did, "kind": "withdrawal_notice",
            "notice": PROFESSIONAL_NOTICE if professional_id else SERVICE_NOTICE}
    body.pop("not_for_professionals", None)
    if professional_id:
        body["recipient"] = {**body["recipient"], "professional_id": professional_id}
    conn.execute(deliveries.insert().values(
        delivery_id=did, kind="withdrawal_notice", decision_id=row.decision_id, information_id=row.information_id,
        information_version=row.information_version, recipient_key=recipient_key,
        recipient_kind=row.recipient_kind, agency_id=row.agency_id, service=row.service, child_id=row.child_id,
        household_id=row.household_id, state="queued", payload=json.dumps(body, separators=(",", ":"),
                                                                          sort_keys=True),
        attempts=0, next_attempt_at=now, created_at=now, queued_at=now, round=round_))


def _raced(conn: sa.Connection, sent: dict[str, dict[str, Any]], values: dict[str, dict[str, Any]],
           now: datetime) -> int:
    """Shares delivered while the sharing step withdrew them: record the truth, and follow with notices.

    A share is claimed, then sent; if consent is withdrawn in between, the sharing step cancels the
    row (or, for a named professional refused, lists them in a new payload) but the copy is already
    on its way. The row is marked delivered (it was), and a withdrawal notice follows: to the
    service when the share was cancelled, to each professional the sent copy did not exclude.
    """
    followed = 0
    rows = conn.execute(sa.select(deliveries).where(DL.delivery_id.in_(list(sent)))).all()
    for row in rows:
        body = sent[row.delivery_id]
        if row.state == "cancelled":
            conn.execute(deliveries.update().where(DL.delivery_id == row.delivery_id, DL.state == "cancelled")
                         .values(values[row.delivery_id] | {"closed_at": None, "why": None}))
            _notice_after(conn, row, body, row.recipient_key, None, now)
            followed += 1
        elif row.state == "delivered" and row.payload != json.dumps(body, separators=(",", ":"), sort_keys=True):
            now_not_for = set(json.loads(row.payload).get("not_for_professionals", ()))
            for pid in sorted(now_not_for - set(body.get("not_for_professionals", ()))):
                _notice_after(conn, row, body, professional_key(row.agency_id, row.service, pid), pid, now)
                followed += 1
    if followed:
        log.warning("sharing.withdrawn_in_flight", notices=followed)
    return followed


def _finish(store: Store, outcomes: list[tuple[str, str, dict[str, Any]]], now: datetime,
            sent: dict[str, dict[str, Any]] | None = None) -> None:
    by_shape: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for delivery_id, _what, values in outcomes:  # one executemany per shape of update
        by_shape.setdefault(tuple(sorted(values)), []).append({"_id": delivery_id, **values})
    with store.engine.begin() as conn:
        for shape, params in by_shape.items():
            stmt = deliveries.update().where(DL.delivery_id == sa.bindparam("_id"), DL.state == "queued").values(
                {k: sa.bindparam(k) for k in shape})
            conn.execute(stmt, params)
        delivered = {d: v for d, what, v in outcomes if what == "delivered"}
        shares = {d: b for d, b in (sent or {}).items() if d in delivered and b.get("kind") == "share"}
        if shares:
            _raced(conn, shares, delivered, now)
        for delivery_id, what, _values in outcomes:
            if what == "failed":
                row = conn.execute(sa.select(deliveries).where(DL.delivery_id == delivery_id)).one()
                agency, service = coordinator_of(conn, row.child_id)
                raise_alert(conn, key=f"delivery_failed:{delivery_id}", kind="delivery_failed",
                            household_id=row.household_id, child_id=row.child_id, to_agency_id=agency,
                            to_service=service, now=now,
                            message=f"A share to {row.service} could not be delivered after {row.attempts} attempts",
                            details={"delivery_id": delivery_id, "last_error": row.last_error})


async def _send(client: httpx.AsyncClient, hook: Webhook, row: dict[str, Any],
                now: datetime) -> tuple[bool, str]:
    body = json.loads(row["payload"])
    body["sent_at"] = now.isoformat()
    raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(hook.secret, raw),
               "X-Hub-Timestamp": str(int(time.time())), "Idempotency-Key": row["delivery_id"],
               "X-Hub-Delivery-Kind": row["kind"]}
    try:
        resp = await client.post(hook.url, content=raw, headers=headers, timeout=10.0)
    except httpx.HTTPError as exc:
        return False, f"{type(exc).__name__}: {exc}"[:500]
    if 200 <= resp.status_code < 300:
        return True, json.dumps({"status": resp.status_code, "at": now.isoformat(), "body": resp.text[:500]})
    return False, f"HTTP {resp.status_code}: {resp.text[:300]}"


async def deliver_due(store: Store, client: httpx.AsyncClient, now: datetime | None = None, *,
                      limit: int = 500, concurrency: int = 32, escalate: bool = True) -> DeliveryStats:
    """Send every queued delivery whose time has come; then (``escalate``) escalate unacknowledged ones."""
    now = now or utcnow()
    stats = DeliveryStats()
    rows = await asyncio.to_thread(_claim_due, store, now, limit)
    if rows:
        hooks = await asyncio.to_thread(load_webhooks, store)
        cancel = await asyncio.to_thread(_withdrawn, store, rows)
        outcomes: list[tuple[str, str, dict[str, Any]]] = []
        sem = asyncio.Semaphore(concurrency)

        async def one(row: dict[str, Any]) -> None:
            did = row["delivery_id"]
            if did in cancel:
                outcomes.append((did, "cancelled", dict(state="cancelled", closed_at=now,
                                                        why="consent withdrawn before delivery")))
                stats.cancelled += 1
                return
            if row["recipient_kind"] in FAMILY_KINDS:
                outcomes.append((did, "delivered", dict(state="delivered", channel="family_view", delivered_at=now,
                                                        receipt=json.dumps({"family_view": now.isoformat()}))))
                stats.delivered += 1
                stats.delivered_ids.append(did)
                return
            hook = hooks.get(row["agency_id"] or "")
            if hook is None:
                outcomes.append((did, "inbox", dict(channel="inbox", next_attempt_at=now + INBOX_RECHECK)))
                stats.to_inbox += 1
                return
            async with sem:
                ok, info = await _send(client, hook, row, now)
            attempts = row["attempts"] + 1
            if ok:
                outcomes.append((did, "delivered", dict(state="delivered", channel="webhook", delivered_at=now,
                                                        attempts=attempts, receipt=info, last_error=None)))
                stats.delivered += 1
                stats.delivered_ids.append(did)
            elif attempts >= max_attempts():
                outcomes.append((did, "failed", dict(state="failed", channel="webhook", attempts=attempts,
                                                     last_error=info, closed_at=now,
                                                     why=f"not delivered after {attempts} attempts")))
                stats.failed += 1
            else:
                outcomes.append((did, "retry", dict(channel="webhook", attempts=attempts, last_error=info,
                                                    next_attempt_at=now + backoff(attempts))))
                stats.retried += 1

        await asyncio.gather(*(one(r) for r in rows))
        sent = {r["delivery_id"]: json.loads(r["payload"]) for r in rows}  # as claimed: what went out
        await asyncio.to_thread(_finish, store, outcomes, now, sent)
        if stats.delivered or stats.failed:
            log.info("sharing.delivered", delivered=stats.delivered, inbox=stats.to_inbox, retried=stats.retried,
                     failed=stats.failed, cancelled=stats.cancelled)
    if escalate:
        stats.escalated = await asyncio.to_thread(escalate_unacknowledged, store, now)
    return stats


#: a share still queued this long after it fell due has not been taken up by any deliverer
OVERDUE = timedelta(seconds=30)


def backlog(store: Store, now: datetime | None = None) -> tuple[int, int]:
    """(queued deliveries, those due for longer than ``OVERDUE``): the second should stay near 0.

    A claimed delivery's ``next_attempt_at`` moves past now for its lease, so only shares nobody
    has taken up — no deliverer running (``HUB_DELIVERY_MODE=process`` without ``hub deliver``), or
    deliverers far behind — count as overdue.
    """
    now = now or utcnow()
    with store.engine.connect() as conn:
        queued, overdue = conn.execute(sa.select(
            sa.func.count(), sa.func.count().filter(DL.next_attempt_at < now - OVERDUE)).where(
            DL.state == "queued")).one()
    return int(queued), int(overdue)


def escalate_unacknowledged(store: Store, now: datetime, hours: float | None = None) -> int:
    """Alert the coordinator once for each professional delivery not acknowledged within N hours."""
    limit = now - timedelta(hours=ack_hours() if hours is None else hours)
    raised = 0
    with store.engine.begin() as conn:
        rows = conn.execute(sa.select(deliveries).where(
            DL.state == "delivered", DL.kind == "share", DL.recipient_kind.not_in(FAMILY_KINDS),
            DL.delivered_at <= limit, DL.escalated_at.is_(None)).limit(500)).all()
        for r in rows:
            agency, service = coordinator_of(conn, r.child_id)
            title = json.loads(r.payload)["information"].get("title") or r.information_id
            if raise_alert(conn, key=f"ack_overdue:{r.delivery_id}", kind="ack_overdue", household_id=r.household_id,
                           child_id=r.child_id, to_agency_id=agency, to_service=service, now=now,
                           message=f"{r.service} has not acknowledged '{title}' delivered "
                                   f"{as_utc(r.delivered_at):%d %b %Y %H:%M}",
                           details={"delivery_id": r.delivery_id, "recipient": r.service,
                                    "delivered_at": as_utc(r.delivered_at).isoformat()}):
                raised += 1
            conn.execute(deliveries.update().where(DL.delivery_id == r.delivery_id).values(escalated_at=now))
    return raised


# ---------------------------------------------------------------------------------------- inbox and views

def _cursor(created_at: datetime, delivery_id: str) -> str:
    raw = json.dumps([as_utc(created_at).isoformat(), delivery_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _uncursor(cursor: str) -> tuple[datetime, str]:
    try:
        ts, did = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(ts), str(did)
    except (ValueError, TypeError) as exc:
        raise ValidationError("cursor is not one this API issued", title="Invalid cursor") from exc


def _view(r: Any) -> dict[str, Any]:
    return {"delivery_id": r.delivery_id, "kind": r.kind, "state": r.state, "channel": r.channel,
            "created_at": as_utc(r.created_at).isoformat(),
            "delivered_at": as_utc(r.delivered_at).isoformat() if r.delivered_at else None,
            "acknowledged_at": as_utc(r.acknowledged_at).isoformat() if r.acknowledged_at else None,
            "content": json.loads(r.payload)}


def inbox(store: Store, agency_id: str, *, cursor: str | None = None, limit: int = 50,
          now: datetime | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """An agency's shares and notices, oldest first; reading a queued one delivers it (channel inbox)."""
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
        fresh = [r.delivery_id for r in rows if r.state == "queued"]
        if fresh:
            conn.execute(deliveries.update().where(DL.delivery_id.in_(fresh), DL.state == "queued").values(
                state="delivered", channel="inbox", delivered_at=now,
                receipt=json.dumps({"inbox_read": now.isoformat()})))
            rows = conn.execute(sa.select(deliveries).where(DL.delivery_id.in_([r.delivery_id for r in rows]))
                                .order_by(DL.created_at, DL.delivery_id)).all()
    return [_view(r) for r in rows], nxt


def acknowledge(store: Store, agency_id: str, delivery_id: str, now: datetime | None = None) -> dict[str, Any]:
    """Record the agency's acknowledgement (idempotent)."""
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
        elif row.state != "acknowledged":
            raise ValidationError(f"this delivery is {row.state} and cannot be acknowledged",
                                  title="Not acknowledgeable")
        row = conn.execute(sa.select(deliveries).where(DL.delivery_id == delivery_id)).one()
    return _view(row)


def family_copies(store: Store, household_id: str) -> list[dict[str, Any]]:
    """Copies delivered into the family's own view (parents and the young person)."""
    q = (sa.select(deliveries).where(DL.household_id == household_id, DL.recipient_kind.in_(FAMILY_KINDS),
                                     DL.state.in_(("delivered", "acknowledged")))
         .order_by(DL.created_at, DL.delivery_id))
    with store.engine.connect() as conn:
        return [_view(r) | {"child_id": r.child_id, "recipient": r.recipient_kind} for r in conn.execute(q)]


def recipient_states(store: Store, household_id: str, child_id: str | None = None) -> list[dict[str, Any]]:
    """Per information and recipient: the current decision and where its delivery is.

    A named professional decided apart from their service has a row of their own
    (``recipient_professional`` set); the service's row stands for everyone else in it.
    """
    conds = [SD.household_id == household_id, SD.current.is_(True)]
    if child_id:
        conds.append(SD.child_id == child_id)
    j = share_decisions.join(deliveries, latest_share(share_decisions), isouter=True)
    q = (sa.select(SD.decision_id, SD.child_id, SD.information_id, SD.information_version, SD.record_type,
                   SD.producer_service, SD.recipient_key, SD.recipient_kind, SD.recipient_service, SD.outcome,
                   SD.rule_id, SD.basis, DL.delivery_id, DL.state, DL.why, DL.delivered_at, DL.acknowledged_at)
         .select_from(j).where(*conds).order_by(SD.child_id, SD.information_id, SD.recipient_key))
    with store.engine.connect() as conn:
        out = []
        for r in conn.execute(q):
            d = dict(r._mapping)
            key = d["recipient_key"]
            d["recipient_professional"] = key.rsplit(":", 1)[1] if key.startswith("professional:") else None
            for k in ("delivered_at", "acknowledged_at"):
                d[k] = as_utc(d[k]).isoformat() if d[k] else None
            out.append(d)
    return out
