"""The background work of sharing as jobs (:mod:`hub.core.jobs`); which process runs which is
:mod:`hub.runtime.placement`'s choice.

* :class:`FollowJob` follows the timeline's change feed (:mod:`hub.sharing.follower`, in a thread),
  woken at once when this process projected a batch and otherwise every ``POLL`` seconds (a change
  another worker projected). Its decisions carry their audit records in their own transaction
  (:mod:`hub.sharing.audit_trail`); where the process delivers, it wakes the delivery job when a pass
  queued something.
* :class:`DeliveryJob` delivers what is due (:func:`hub.sharing.delivery.deliver_due`): signed webhook
  POSTs, family copies, the inbox, retries; a pass that took something up is followed by another at
  once. It owns its HTTP client (unless given one) and closes it when its runner stops.
* :class:`AuditCatchUpJob` copies into the audit log what an earlier release left to be copied
  (:func:`hub.sharing.audit_trail.catch_up`), under the chores lease, and then stops looking.
* :class:`EscalationJob` escalates unacknowledged deliveries; :class:`ReadinessJob` sweeps readiness
  alerts and report requests; :class:`CoordinationJob` sweeps the coordination alert rules
  (:mod:`hub.sharing.coordination`), each over the households with something new or due
  (:mod:`hub.sharing.sweep_scope`) and every household hourly; :class:`AlertRetentionJob` removes
  alerts resolved more than ``HUB_ALERT_RETENTION_DAYS`` ago (:mod:`hub.governance.alert_retention`), every
  ``ALERT_RETENTION_EVERY`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx
from sqlalchemy.exc import SQLAlchemyError

from hub.core.errors import HubError
from hub.core.jobs import Job
from hub.db.lease import Lease
from hub.db.store import Store, utcnow
from hub.governance.alert_retention import apply_alert_retention
from hub.sharing import audit_trail, coordination
from hub.sharing.delivery import DeliveryStats, deliver_due, escalate_unacknowledged
from hub.sharing.follower import LEASE, Follower
from hub.sharing.readiness import sweep
from hub.sharing.safeguarding import expire_overrides
from hub.sharing.sweep_scope import SweepScope

#: seconds between looks at the change feed when nothing woke the follower
POLL = 0.2
#: rows of an earlier release copied into the audit log per kind and pass; a full batch is followed by another
AUDIT_BATCH = 2000
#: seconds between passes of alert retention (resolved alerts are kept for days: an hour is prompt enough)
ALERT_RETENTION_EVERY = 3600.0


def claimed(stats: DeliveryStats) -> int:
    """How many deliveries one pass took up (whatever became of them)."""
    return stats.delivered + stats.to_inbox + stats.retried + stats.failed + stats.cancelled


class DeliveryJob(Job):
    """Deliver what is due every ``every`` seconds, or at once when woken."""

    def __init__(self, store: Store, client: httpx.AsyncClient | None = None, *, every: float,
                 limit: int = 500, concurrency: int = 32) -> None:
        super().__init__("sharing.deliver", every=every)
        self.store = store
        self.client = client
        self.owns_client = client is None
        self.limit = limit
        self.concurrency = concurrency
        self.totals = DeliveryStats()

    def http(self) -> httpx.AsyncClient:
        if self.client is None:
            self.client = httpx.AsyncClient(timeout=10.0, limits=httpx.Limits(max_connections=64))
        return self.client

    async def run_once(self) -> float | None:
        stats = await deliver_due(self.store, self.http(), limit=self.limit, concurrency=self.concurrency,
                                  escalate=False)
        for name in ("delivered", "to_inbox", "retried", "failed", "cancelled"):
            setattr(self.totals, name, getattr(self.totals, name) + getattr(stats, name))
        return 0.0 if claimed(stats) > 0 else None

    async def close(self) -> None:
        """Close the HTTP client if this job made it (an injected one is its owner's to close)."""
        if self.owns_client and self.client is not None:
            client, self.client = self.client, None
            await client.aclose()


class FollowJob(Job):
    """Decide on sharing as the change feed moves (audited with the decisions); wake ``deliveries`` when due."""

    def __init__(self, store: Store, owner: str, *, wake: asyncio.Event | None = None, poll: float = POLL,
                 deliveries: Job | None = None) -> None:
        super().__init__("sharing.follow", every=poll, wake=wake)
        self.follower = Follower(store, owner)
        self.deliveries = deliveries

    async def run_once(self) -> float | None:
        step = await asyncio.to_thread(self.follower.step)
        result = step.result
        if self.deliveries is not None and result.has_work:
            self.deliveries.wake.set()
        if not step.held:  # another process follows the feed: look again when its lease could lapse
            return LEASE.total_seconds() / 3
        return 0.0 if step.more else None

    async def close(self) -> None:
        """Give the cursor's lease up so another process takes over at once."""
        with contextlib.suppress(HubError, SQLAlchemyError):
            await asyncio.to_thread(self.follower.release)


class AuditCatchUpJob(Job):
    """Copy what an earlier release left to be copied into the audit log; then nothing (held under ``lease``)."""

    def __init__(self, store: Store, *, every: float, lease: Lease | None = None, batch: int = AUDIT_BATCH) -> None:
        super().__init__("sharing.audit_catch_up", every=every, lease=lease)
        self.store = store
        self.batch = batch
        self.done = False

    async def run_once(self) -> float | None:
        if self.done:
            return None
        written = await asyncio.to_thread(audit_trail.catch_up, self.store, self.batch)
        self.done = written == 0 and not await asyncio.to_thread(audit_trail.pending, self.store)
        return 0.0 if written >= self.batch else None  # a full batch: more may be waiting


class EscalationJob(Job):
    """Alert coordinators about shares not acknowledged in time (unread in the inbox too); resolve cleared ones."""

    def __init__(self, store: Store, *, every: float, lease: Lease | None = None) -> None:
        super().__init__("sharing.escalate", every=every, lease=lease)
        self.store = store

    async def run_once(self) -> float | None:
        await asyncio.to_thread(escalate_unacknowledged, self.store, utcnow())
        return None


def sweep_scope(every: float) -> SweepScope:
    """A sweep job's scope: every household at first, after the lease was away (no pass for three intervals)
    and every ``FULL_EVERY`` seconds; in between, those with something new or due."""
    return SweepScope(stale_after=3 * every + 60)


class ReadinessJob(Job):
    """Sweep readiness alerts and report requests: raise new ones, resolve those whose condition cleared."""

    def __init__(self, store: Store, *, every: float, lease: Lease | None = None) -> None:
        super().__init__("sharing.readiness", every=every, lease=lease)
        self.store = store
        self.scope = sweep_scope(every)

    async def run_once(self) -> float | None:
        await asyncio.to_thread(sweep, self.store, scope=self.scope)
        return None


class CoordinationJob(Job):
    """Sweep the coordination alert rules in event time: raise new alerts, resolve those whose condition cleared."""

    def __init__(self, store: Store, *, every: float, lease: Lease | None = None) -> None:
        super().__init__("sharing.coordination", every=every, lease=lease)
        self.store = store
        self.scope = sweep_scope(every)

    async def run_once(self) -> float | None:
        await asyncio.to_thread(coordination.sweep, self.store, scope=self.scope)
        return None


class OverrideExpiryJob(Job):
    """Decide again each child whose safeguarding override has ended, once, audited."""

    def __init__(self, store: Store, *, every: float, lease: Lease | None = None) -> None:
        super().__init__("sharing.override_expiry", every=every, lease=lease)
        self.store = store

    async def run_once(self) -> float | None:
        await asyncio.to_thread(expire_overrides, self.store, utcnow())
        return None


class AlertRetentionJob(Job):
    """Remove alerts resolved more than ``HUB_ALERT_RETENTION_DAYS`` ago and their change-feed rows; audited."""

    def __init__(self, store: Store, *, every: float = ALERT_RETENTION_EVERY, lease: Lease | None = None) -> None:
        super().__init__("sharing.alert_retention", every=every, lease=lease)
        self.store = store

    async def run_once(self) -> float | None:
        await asyncio.to_thread(apply_alert_retention, self.store)
        return None
