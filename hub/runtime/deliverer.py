"""`hub deliver`: share deliveries in a process of their own, beside the stream workers.

The stream workers project and decide (:mod:`hub.sharing.runtime`); with ``HUB_DELIVERY_MODE``
``process`` they leave the rest to this loop:

* **deliveries** — every ``poll`` seconds (50 ms) it claims what is due in ``deliveries`` (index on
  (state, next_attempt_at)) and delivers it with :func:`hub.sharing.delivery.deliver_due`: signed
  webhook POSTs, family copies, the inbox, retries. A pass that found work is followed by another
  at once. Rows are claimed under a lease (``next_attempt_at`` moved ahead), so any number of
  deliverers can run against one database and each share is sent by one of them.
* **chores** — every ``chores_every`` seconds (1 s), by one deliverer at a time (a lease on the
  ``stream_cursors`` row ``sharing-chores``): the audit trail of new decisions and consent changes
  (:func:`hub.sharing.audit_trail.record_new`); every ``escalate_every`` seconds (60) ``ack_overdue``
  escalation; every ``HUB_SHARING_READINESS_INTERVAL`` seconds (300) the readiness sweep.

A database or network failure is logged and retried with a growing pause (up to 30 s); nothing
stops the loop but :meth:`Deliverer.stop` (SIGTERM), after which the pass in hand finishes, the
chores lease is given up and the HTTP client closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable

import httpx
import sqlalchemy as sa

from hub.core.errors import HubError
from hub.core.logging import get_logger
from hub.core.settings import sharing_settings
from hub.db.lease import CHORES, Lease
from hub.db.store import Store, utcnow
from hub.runtime.probes import serve_probes
from hub.sharing import audit_trail
from hub.sharing.delivery import DeliveryStats, deliver_due, escalate_unacknowledged
from hub.sharing.readiness import sweep

log = get_logger(__name__)
#: seconds between looks for due deliveries when the last pass found nothing
POLL = 0.05
#: seconds between chores (audit trail; escalation and readiness sweep when due)
CHORES_EVERY = 1.0
#: seconds between looks for unacknowledged deliveries (the deadline is hours: HUB_SHARING_ACK_HOURS)
ESCALATE_EVERY = 60.0
#: audit records copied per kind and chores pass; a full batch is followed by another at once
AUDIT_BATCH = 2000
#: seconds without a finished delivery pass after which /healthz fails (a send times out in 10 s)
STUCK = 120.0
#: the longest pause after repeated failures
MAX_PAUSE = 30.0
#: errors worth a warning and a retry; anything else is logged as an error and retried too
EXPECTED = (HubError, sa.exc.SQLAlchemyError, OSError, httpx.HTTPError)


def _reason(exc: BaseException) -> str:
    """The first line only: SQLAlchemy puts the statement and its parameters on the lines after it."""
    return (str(exc).splitlines() or [""])[0][:200]


def claimed(stats: DeliveryStats) -> int:
    """How many deliveries one pass took up (whatever became of them)."""
    return stats.delivered + stats.to_inbox + stats.retried + stats.failed + stats.cancelled


class Deliverer:
    """The delivery loop of one process; ``client`` and ``store`` are injectable (tests drive it directly)."""

    def __init__(self, store: Store, client: httpx.AsyncClient | None = None, *, owner: str | None = None,
                 poll: float = POLL, chores_every: float = CHORES_EVERY, escalate_every: float = ESCALATE_EVERY,
                 limit: int = 500, concurrency: int = 32) -> None:
        self.store = store
        self.owns_client = client is None
        self.client = client or httpx.AsyncClient(timeout=10.0, limits=httpx.Limits(max_connections=64))
        self.owner = owner or f"deliverer-{socket.gethostname()}-{os.getpid()}"
        self.poll = poll
        self.chores_every = chores_every
        self.escalate_every = escalate_every
        self.limit = limit
        self.concurrency = concurrency
        self.lease = Lease(store, CHORES, self.owner)
        self.stopping = asyncio.Event()
        self.totals = DeliveryStats()
        self.passes = 0
        self.last_pass = time.monotonic()  # when the delivery loop last completed a pass (liveness)
        self.healthy = True  # the last delivery pass reached the database (readiness)
        self.last_sweep = self.last_escalation = -float("inf")  # both due on the first chores pass

    def stop(self) -> None:
        """Finish the pass in hand, then return from :meth:`run`."""
        self.stopping.set()

    async def run(self) -> None:
        log.info("sharing.deliverer_started", owner=self.owner)
        try:
            await asyncio.gather(self._loop("deliver", self.deliver_once),
                                 self._loop("chores", self.chores_once, self.chores_every))
        finally:
            with contextlib.suppress(*EXPECTED):
                await asyncio.to_thread(self.lease.release)
            if self.owns_client:
                await self.client.aclose()
            log.info("sharing.deliverer_stopped", owner=self.owner, passes=self.passes,
                     delivered=self.totals.delivered, retried=self.totals.retried, failed=self.totals.failed)

    async def deliver_once(self) -> bool:
        """One delivery pass; True when it took something up (so look again at once)."""
        stats = await deliver_due(self.store, self.client, limit=self.limit, concurrency=self.concurrency,
                                  escalate=False)
        for name in ("delivered", "to_inbox", "retried", "failed", "cancelled"):
            setattr(self.totals, name, getattr(self.totals, name) + getattr(stats, name))
        return claimed(stats) > 0

    async def chores_once(self) -> bool:
        """Audit trail, escalation and (when due) the readiness sweep, if this process holds the chores lease."""
        if not await asyncio.to_thread(self.lease.hold):
            return False
        written = await asyncio.to_thread(audit_trail.record_new, self.store, AUDIT_BATCH)
        if time.monotonic() - self.last_escalation >= self.escalate_every:
            self.last_escalation = time.monotonic()
            await asyncio.to_thread(escalate_unacknowledged, self.store, utcnow())
        if time.monotonic() - self.last_sweep >= sharing_settings().readiness_interval:
            self.last_sweep = time.monotonic()
            await asyncio.to_thread(sweep, self.store)
        return written >= AUDIT_BATCH  # a full batch: more may be waiting

    async def _loop(self, name: str, once: Callable[[], Awaitable[bool]], every: float | None = None) -> None:
        idle = self.poll if every is None else every
        pause = 1.0
        while not self.stopping.is_set():
            try:
                busy = await once()
                ok = True
            except EXPECTED as exc:  # the database restarting, a network error: log, back off, try again
                log.warning(f"sharing.{name}_failed", error=type(exc).__name__, reason=_reason(exc))
                busy, ok = False, False
            except Exception as exc:  # a bug must not end the process either; it shows in the logs
                log.error(f"sharing.{name}_error", error=type(exc).__name__, reason=_reason(exc))
                busy, ok = False, False
            if ok:
                wait, pause = (0.0 if busy else idle), 1.0
            else:
                wait, pause = pause, min(pause * 2, MAX_PAUSE)
            if name == "deliver":
                self.passes += 1
                self.last_pass = time.monotonic()
                self.healthy = ok
            if wait <= 0:
                await asyncio.sleep(0)  # let the other loop and signal handlers in
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), wait)

    def probe(self, path: str) -> tuple[int, dict[str, object]] | None:
        """``/healthz``: the delivery loop turns (a pass within ``STUCK`` s); ``/readyz``: and reaches the database."""
        since = time.monotonic() - self.last_pass
        alive = since < STUCK
        if path == "/healthz":
            return (200 if alive else 503), {"status": "ok" if alive else "stuck",
                                             "seconds_since_pass": round(since, 1)}
        if path == "/readyz":
            ready = alive and self.healthy and not self.stopping.is_set()
            return (200 if ready else 503), {"ready": ready, "passes": self.passes}
        return None


async def run_deliverer(store: Store, *, poll: float = POLL, probe_host: str = "0.0.0.0",
                        probe_port: int | None = None) -> Deliverer:
    """Run until SIGTERM or SIGINT (the `hub deliver` process); probes on ``probe_port`` when given."""
    deliverer = Deliverer(store, poll=poll)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, deliverer.stop)
    probes = await serve_probes(deliverer.probe, probe_host, probe_port) if probe_port else None
    try:
        await deliverer.run()
    finally:
        if probes is not None:
            await probes.cleanup()
    return deliverer
