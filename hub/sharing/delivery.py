"""Delivering permitted shares: agency webhooks, the agency inbox, the family's own view, receipts, escalation.

This module claims and sends due deliveries and escalates unacknowledged ones; webhook
configuration, signing and the POST are :mod:`hub.sharing.webhooks`, the agency inbox and the
family's view :mod:`hub.sharing.inbox`, shares withdrawn in flight :mod:`hub.sharing.inflight`
(the names callers use are re-exported here).

Configuring agency webhooks
    Either rows in the ``agency_webhooks`` table (agency_id, url, secret, active, batch_max), or a JSON
    file named by ``HUB_WEBHOOKS_FILE``::

        {"7A6": {"url": "https://abuhb.example/hub-inbox", "secret": "a-long-random-shared-secret"},
         "7A4": {"url": "https://cav.example/hub", "secret": "whsec_...", "batch_max": 50}}

    The file wins for an agency in both; it is re-read when it changes. ``batch_max`` (default 1: each
    delivery in a POST of its own) lets a webhook that accepts batches take up to that many deliveries
    per POST; outside 1 to 500 it is refused (ConfigError naming ``batch_max``: ``set_webhook`` writes
    nothing, a file that says so fails the pass). An agency with no webhook reads its shares from
    ``GET /v1/agencies/{agency_id}/inbox`` instead (a read marks them delivered) and acknowledges
    each with ``POST /v1/agencies/{agency_id}/inbox/{delivery_id}/ack``.

What a webhook receives (``POST``, JSON)
    Least data: the delivery id and kind (``share``, ``withdrawal_notice`` or ``recall``), the pseudonymous hub
    child id, the information's metadata (record type, kind, category, issue time, producing agency
    and service, report / plan kind, title and document reference — never free text or any other
    identifier), the recipient service and the decision's basis / rule / rule-set version, and
    ``sent_at``. Named professionals (see :mod:`hub.sharing.decisions`): a share to the service
    may carry ``not_for_professionals`` (ids of professionals it must not be shown to); a share or
    notice whose ``recipient.professional_id`` is set is about that professional alone — a share
    gives them access of their own (a notice to the service does not take it away), a notice takes
    all their access away until a later share covers them again. A notice then a later share for
    the same recipient (consent withdrawn, then given again) each arrive as deliveries of their
    own. Headers, signed to the Standard Webhooks specification: ``webhook-id`` (the delivery
    id, the same for every attempt), ``webhook-timestamp`` (unix seconds of the attempt; receivers
    refuse one more than five minutes off, which stops replays) and ``webhook-signature`` (``v1,``
    and the base64 HMAC-SHA256 of ``"{webhook-id}.{webhook-timestamp}.{raw body}"`` keyed with the
    secret, ``whsec_<base64>``); also ``Idempotency-Key`` (the delivery id) and ``X-Hub-Delivery-Kind``.
    A webhook with ``batch_max`` above 1 gets its deliveries of a pass in batches instead
    (:mod:`hub.sharing.batched`): one POST ``{"batch": [each delivery's body as above, with its
    sent_at], "sent_at": ...}``, kind ``batch``, signed the same way with ``webhook-id`` and
    ``Idempotency-Key`` the batch id (``batch_`` and 32 hex digits, the same for the same set of
    deliveries); receivers de-duplicate on each element's ``delivery_id``. A 2xx delivers every
    delivery of the batch (each receipt names the batch), anything else is a failed attempt for each.
    docs/operations.md ("Receiving webhooks") shows a receiver verifying. Any 2xx is the receipt
    (status and the first 500 characters of the body are recorded); anything else is retried with
    exponential backoff with jitter (a uniform wait between half and all of ``HUB_SHARING_RETRY_BASE``
    s doubling per attempt, capped at an hour)
    up to ``HUB_SHARING_MAX_ATTEMPTS`` attempts (default 8), then the delivery is ``failed`` (dead
    letter) and the coordinator is alerted.

Family copies (parents, young person) are delivered into the family's own view
(``GET /v1/households/{id}/family-copies``). A professional share not acknowledged within
``HUB_SHARING_ACK_HOURS`` hours (default 72) of reaching the agency — delivered to its webhook, or
waiting in its inbox, read or unread — raises an ``ack_overdue`` alert to the coordinator
(:mod:`hub.sharing.escalation`), resolved when the share is acknowledged. A share waiting unread
in the inbox is shown as "in the agency's inbox, not yet read", not as on its way.
Before any share is sent, the directives it rests on are checked again: one withdrawn since the
decision cancels it. A share the sharing step withdraws while its POST is in flight has gone all
the same: it is recorded as delivered and a withdrawal notice follows it (to the service, or to
each named professional the copy did not yet exclude).

Sending, and shares in doubt
    Before each POST the share is marked ``sending`` (``attempt_id``, ``sending_at``, and a claim
    until ``next_attempt_at``) in a transaction of its own (a batch's shares together, in one). A
    deliverer that dies mid-POST (kill -9, a lost machine) leaves it so; when the claim has expired,
    the next deliverer pass marks it ``in_doubt``: the recipient may or may not have it. An in-doubt
    share is sent again while the consent it rests on stands (the ``Idempotency-Key`` is the delivery
    id, in a batch each element's ``delivery_id``, so the receiver keeps one copy). If consent is
    withdrawn, it is not cancelled as a queued share would be: it is closed in doubt (no more
    attempts) and the recipient gets a withdrawal notice as for a delivered share; the family's share
    list says it "may have been received". A withdrawal notice is never sent
    while the share it follows is ``sending``, so it cannot overtake it.

Recalls
    A copy shared from a link undone as wrong (the record was linked to the wrong child) is
    recalled: the recipient gets a ``recall`` delivery (``reason`` "linked to the wrong child in
    error", ``recalls``: the share's delivery id) by webhook or in its inbox, like a withdrawal
    notice; a family copy leaves the family's view (its share is ``recalled``).
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from opentelemetry.trace import SpanKind

from hub.core.logging import get_logger
from hub.core.settings import sharing_settings
from hub.core.tracing import continued
from hub.db.schema import consent_directives, deliveries, share_decisions
from hub.db.sealed import sealer
from hub.db.store import Store, utcnow
from hub.sharing import audit_trail, batched, payloads
from hub.sharing.alerts import coordinator_of, raise_alert
from hub.sharing.escalation import ack_hours, escalate_unacknowledged
from hub.sharing.inbox import FAMILY_KINDS, acknowledge, family_copies, inbox, recipient_states
from hub.sharing.inflight import follow_raced
from hub.sharing.ledger import MAYBE_SENT, NOTICE_KINDS
from hub.sharing.marking import Marker
from hub.sharing.webhooks import Webhook, load_webhooks, new_secret, send, set_webhook, sign, signed_headers, verify

__all__ = [
    "FAMILY_KINDS", "DeliveryStats", "Webhook", "ack_hours", "acknowledge", "backlog", "backoff", "deliver_due",
    "escalate_unacknowledged", "family_copies", "inbox", "load_webhooks", "max_attempts", "new_secret",
    "recipient_states", "set_webhook", "sign", "signed_headers", "verify",
]

log = get_logger(__name__)
DL = deliveries.c
SD = share_decisions.c
CD = consent_directives.c
LEASE = timedelta(seconds=60)
#: states the deliverer takes up when due
CLAIMABLE = ("queued", "in_doubt")
INBOX_RECHECK = timedelta(minutes=5)
WITHDRAWN_BEFORE_DELIVERY = "consent withdrawn before delivery"


def max_attempts() -> int:
    return sharing_settings().max_attempts


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

def _expire_sending(conn: sa.Connection, now: datetime) -> int:
    """Shares left ``sending`` past their claim (their deliverer died mid-POST): the outcome is unknown."""
    n = conn.execute(deliveries.update().where(DL.state == "sending", DL.next_attempt_at <= now)
                     .values(state="in_doubt")).rowcount
    if n:
        log.warning("sharing.delivery_in_doubt", deliveries=n)
    return int(n or 0)


def _claim_due(store: Store, now: datetime, limit: int) -> list[dict[str, Any]]:
    """Claim due deliveries: queued ones, and in-doubt shares (sent again: the receiver dedupes by id).

    A withdrawal notice waits while the share it follows is being sent (its claim has not expired),
    so it never overtakes it. A share closed in doubt (``closed_at`` set) is not sent again.
    """
    lease_until = now + LEASE + timedelta(microseconds=random.randint(0, 999_999))
    sibling = deliveries.alias("share_in_hand").c
    share_in_hand = sa.exists().where(
        sibling.information_id == DL.information_id, sibling.information_version == DL.information_version,
        sibling.recipient_key == DL.recipient_key, sibling.child_id == DL.child_id, sibling.kind == "share",
        sibling.state.in_(MAYBE_SENT), sibling.next_attempt_at > now)
    with store.engine.begin() as conn:
        _expire_sending(conn, now)
        due = sa.and_(DL.state.in_(CLAIMABLE), DL.closed_at.is_(None), DL.next_attempt_at <= now)
        waits = sa.and_(DL.kind.in_(NOTICE_KINDS), share_in_hand)
        ids = [r[0] for r in conn.execute(sa.select(DL.delivery_id).where(due, ~waits)
                                          .order_by(DL.next_attempt_at, DL.delivery_id).limit(limit))]
        if not ids:
            return []
        conn.execute(deliveries.update().where(DL.delivery_id.in_(ids), due).values(next_attempt_at=lease_until))
        q = (sa.select(deliveries, SD.directive_ids).select_from(
            deliveries.join(share_decisions, SD.decision_id == DL.decision_id, isouter=True))
             .where(DL.delivery_id.in_(ids), DL.next_attempt_at == lease_until))
        order = {d: i for i, d in enumerate(ids)}  # the claimed order (batches keep it)
        rows = sorted((dict(r._mapping) for r in conn.execute(q)), key=lambda r: order[r["delivery_id"]])
    seal = sealer(store)  # what goes out: the payload opened (an erased child's reads as erased)
    seal.prefetch(r["payload"] for r in rows)  # the children's keys in one query, not one a child
    return [r | {"payload": payloads.text(seal, r["delivery_id"], r["payload"])} for r in rows]


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


def _where(what: str, values: dict[str, Any]) -> sa.ColumnElement[bool]:
    """Which state an outcome may move a row from: a POST's outcome only the row of that attempt."""
    if "attempt_id" not in values:
        states: tuple[str, ...] = ("queued",) if what == "cancelled" else CLAIMABLE
        return sa.or_(*(DL.state == st for st in states))  # no IN (...): it runs as executemany
    # a share closed in doubt while its POST was in flight records the delivery, and nothing else
    states = ("sending", "in_doubt") if what == "delivered" else ("sending",)
    return sa.and_(DL.attempt_id == sa.bindparam("_attempt"), sa.or_(*(DL.state == st for st in states)))


def _finish(store: Store, outcomes: list[tuple[str, str, dict[str, Any]]], now: datetime,
            sent: dict[str, dict[str, Any]] | None = None) -> None:
    by_shape: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for delivery_id, what, values in outcomes:  # one executemany per shape of update
        by_shape.setdefault((what, *sorted(values)), []).append(
            {"_id": delivery_id, **({"_attempt": values["attempt_id"]} if "attempt_id" in values else {}),
             **{k: v for k, v in values.items() if k != "attempt_id"}})
    with store.engine.begin() as conn:
        for (what, *shape), params in by_shape.items():
            stmt = deliveries.update().where(DL.delivery_id == sa.bindparam("_id"), _where(what, dict.fromkeys(shape))
                                             ).values({k: sa.bindparam(k) for k in shape if k != "attempt_id"})
            conn.execute(stmt, params)
        delivered = {d: v for d, what, v in outcomes if what == "delivered"}
        shares = {d: b for d, b in (sent or {}).items() if d in delivered and b.get("kind") == "share"}
        audit = [audit_trail.notice_entry(n) for n in (follow_raced(conn, shares, delivered, now) if shares else [])]
        cancelled = [d for d, what, _v in outcomes if what == "cancelled"]
        for i in range(0, len(cancelled), 500):  # those this pass cancelled (a row no longer queued was not)
            audit += [audit_trail.cancel_entry(r._mapping, WITHDRAWN_BEFORE_DELIVERY, None) for r in conn.execute(
                sa.select(deliveries).where(DL.delivery_id.in_(cancelled[i:i + 500]), DL.state == "cancelled",
                                            DL.why == WITHDRAWN_BEFORE_DELIVERY))]
        for delivery_id, what, _values in outcomes:
            if what == "failed":
                row = conn.execute(sa.select(deliveries).where(DL.delivery_id == delivery_id)).one()
                agency, service = coordinator_of(conn, row.child_id)
                raise_alert(conn, key=f"delivery_failed:{delivery_id}", kind="delivery_failed",
                            household_id=row.household_id, child_id=row.child_id, to_agency_id=agency,
                            to_service=service, now=now,
                            message=f"A share to {row.service} could not be delivered after {row.attempts} attempts",
                            details={"delivery_id": delivery_id, "last_error": row.last_error})
        audit_trail.write(conn, audit)  # last: the audit chain's lock is held from here to the commit


def _posted(row: dict[str, Any], ok: bool, info: str, attempt: str, now: datetime,
            stats: DeliveryStats) -> tuple[str, str, dict[str, Any]]:
    """The outcome of one POST: delivered, failed for good, or a retry after a backoff."""
    did, attempts = row["delivery_id"], row["attempts"] + 1
    if ok:
        stats.delivered += 1
        stats.delivered_ids.append(did)
        return did, "delivered", dict(state="delivered", channel="webhook", delivered_at=now, attempts=attempts,
                                      receipt=info, last_error=None, closed_at=None, why=None, attempt_id=attempt)
    if attempts >= max_attempts():
        stats.failed += 1
        return did, "failed", dict(state="failed", channel="webhook", attempts=attempts, last_error=info,
                                   closed_at=now, attempt_id=attempt, why=f"not delivered after {attempts} attempts")
    stats.retried += 1
    again = "in_doubt" if row["state"] == "in_doubt" else "queued"  # an earlier POST may have got there
    return did, "retry", dict(state=again, channel="webhook", attempts=attempts, last_error=info,
                              next_attempt_at=now + backoff(attempts), attempt_id=attempt)


async def deliver_due(store: Store, client: httpx.AsyncClient, now: datetime | None = None, *,
                      limit: int = 500, concurrency: int = 32, escalate: bool = True) -> DeliveryStats:
    """Send every queued delivery whose time has come; then (``escalate``) escalate unacknowledged ones."""
    now = now or utcnow()
    stats = DeliveryStats()
    rows = await asyncio.to_thread(_claim_due, store, now, limit)
    if rows:
        hooks = await asyncio.to_thread(load_webhooks, store)
        cancel = await asyncio.to_thread(_withdrawn, store, rows)
        traces = await asyncio.to_thread(store.trace_headers,
                                         [(r["information_id"], r["information_version"]) for r in rows])
        outcomes: list[tuple[str, str, dict[str, Any]]] = []
        sem = asyncio.Semaphore(concurrency)
        # each single POST waits for its row's "sending" mark to commit; rows asking together share the commit
        marker = Marker(store, now, lease=LEASE, claimable=CLAIMABLE)

        async def one(row: dict[str, Any]) -> None:
            # a span continuing the trace of the request that sent the information (hub/core/tracing.py)
            with continued("deliver", [traces.get((row["information_id"], row["information_version"]), [])],
                           kind=SpanKind.CLIENT, attributes={"hub.delivery.kind": row["kind"],
                                                             "hub.recipient.kind": row["recipient_kind"]}):
                await deliver_one(row)

        async def deliver_one(row: dict[str, Any]) -> None:
            did = row["delivery_id"]
            if did in cancel:
                if row["state"] == "in_doubt":
                    return  # may have been received: the sharing step closes it and sends the notice
                outcomes.append((did, "cancelled", dict(state="cancelled", closed_at=now,
                                                        why=WITHDRAWN_BEFORE_DELIVERY)))
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
                attempt = str(uuid.uuid4())
                if not await marker.mark(row, attempt):
                    return  # cancelled or closed since the claim
                ok, info = await send(client, hook, row, now)
            outcomes.append(_posted(row, ok, info, attempt, now, stats))

        async def batch(hook: Webhook, group: list[dict[str, Any]]) -> None:  # hub/sharing/batched.py
            with continued("deliver", [traces.get((r["information_id"], r["information_version"]), []) for r in group],
                           kind=SpanKind.CLIENT, attributes={"hub.delivery.kind": batched.KIND,
                                                             "hub.batch.size": len(group)}):
                async with sem:
                    attempt = str(uuid.uuid4())
                    ours = await asyncio.to_thread(batched.mark_sending, store, group, attempt, now,
                                                   until=now + LEASE, claimable=CLAIMABLE)
                    if not ours:
                        return  # every row cancelled or closed since the claim
                    ok, info = await batched.send(client, hook, ours, now)
            outcomes.extend(batched.retry_together([_posted(r, ok, info, attempt, now, stats) for r in ours]))

        alone, batches = batched.plan(rows, hooks, cancel)
        await asyncio.gather(*(one(r) for r in alone), *(batch(hook, group) for hook, group in batches))
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
