"""Webhook batches: up to an agency's ``batch_max`` deliveries in one signed POST.

An agency whose webhook has ``batch_max`` above 1 (``agency_webhooks.batch_max`` or ``"batch_max"``
in ``HUB_WEBHOOKS_FILE``) gets every webhook delivery of a deliverer pass in batches: its claimed rows,
in claimed order, cut into runs of at most ``batch_max`` (:func:`plan`). Cancellation of a share whose
consent was withdrawn, family copies and the inbox are decided per row before this, as for any agency.

Each batch is marked ``sending`` in one transaction (:func:`mark_sending`; a row no longer claimable is
left out), then POSTed once (:func:`send`): ``{"batch": [each delivery's body exactly as it would go
alone, with its sent_at], "sent_at": ...}`` with ``X-Hub-Delivery-Kind: batch``; ``webhook-id`` and
``Idempotency-Key`` are the batch id (:func:`batch_id`), the same for the same set of deliveries, so a
retry of that set is recognisable; the receiver de-duplicates on each element's ``delivery_id``. A 2xx
delivers every row (each receipt names the batch); anything else is a failed attempt for every row,
and the rows of a retried batch fall due together (:func:`retry_together`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx
import sqlalchemy as sa

from hub.db.schema import deliveries
from hub.db.store import Store
from hub.sharing.inbox import FAMILY_KINDS
from hub.sharing.marking import still_claimed
from hub.sharing.webhooks import Webhook, body_of, post

DL = deliveries.c
KIND = "batch"
Row = dict[str, Any]
Outcome = tuple[str, str, dict[str, Any]]


def batch_id(delivery_ids: Iterable[str]) -> str:
    """The id of a batch: the same for the same set of deliveries, whatever their order."""
    return "batch_" + hashlib.sha256("\n".join(sorted(delivery_ids)).encode()).hexdigest()[:32]


def plan(rows: Sequence[Row], hooks: Mapping[str, Webhook],
         cancel: set[str]) -> tuple[list[Row], list[tuple[Webhook, list[Row]]]]:
    """Claimed rows → (those handled one at a time as before, batches for webhooks that take them).

    A row goes in a batch only if it would be POSTed: not cancelled, not a family copy, its agency has
    a webhook with ``batch_max`` above 1. Batches are per agency, in claimed order, each at most ``batch_max``.
    """
    alone: list[Row] = []
    runs: dict[str, tuple[Webhook, list[Row]]] = {}
    for row in rows:
        agency = row["agency_id"] or ""
        hook = hooks.get(agency)
        if hook is None or hook.batch_max <= 1 or row["delivery_id"] in cancel or row["recipient_kind"] in FAMILY_KINDS:
            alone.append(row)
        else:
            runs.setdefault(agency, (hook, []))[1].append(row)
    return alone, [(hook, run[i:i + hook.batch_max]) for hook, run in runs.values()
                   for i in range(0, len(run), hook.batch_max)]


def mark_sending(store: Store, rows: Sequence[Row], attempt_id: str, now: datetime, *, until: datetime,
                 claimable: Sequence[str]) -> list[Row]:
    """Mark a batch ``sending`` (one attempt id, claim ``until``) in one transaction, committed before the
    POST; the rows still ours to send, in their order (a row cancelled or closed since the claim is not)."""
    ids = [r["delivery_id"] for r in rows]
    claims: dict[datetime, list[str]] = {}
    for r in rows:  # the claim each row was taken with (one per pass)
        claims.setdefault(r["next_attempt_at"], []).append(r["delivery_id"])
    with store.engine.begin() as conn:
        for claimed, some in claims.items():
            conn.execute(still_claimed(some, claimed, attempt_id, now, until=until, claimable=claimable))
        ours = {r[0] for r in conn.execute(sa.select(DL.delivery_id).where(
            DL.delivery_id.in_(ids), DL.attempt_id == attempt_id, DL.state == "sending"))}
    return [r for r in rows if r["delivery_id"] in ours]


async def send(client: httpx.AsyncClient, hook: Webhook, rows: Sequence[Row], now: datetime) -> tuple[bool, str]:
    """One signed POST of the batch: (True, the receipt naming the batch) on a 2xx, else (False, why)."""
    bid = batch_id(r["delivery_id"] for r in rows)
    body = {"batch": [body_of(r, now) for r in rows], "sent_at": now.isoformat()}
    ok, info = await post(client, hook, bid, KIND, body, now, receipt={"batch": bid, "batch_size": len(rows)})
    return ok, info if ok else f"batch {bid}: {info}"[:500]


def retry_together(outcomes: list[Outcome]) -> list[Outcome]:
    """A failed batch's rows fall due again together (the longest of their backoffs), so the next pass
    claims them side by side and sends the same set, with the same batch id, when nothing else is due."""
    due = [v["next_attempt_at"] for _d, what, v in outcomes if what == "retry"]
    if due:
        for _d, what, v in outcomes:
            if what == "retry":
                v["next_attempt_at"] = max(due)
    return outcomes
