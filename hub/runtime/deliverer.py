"""`hub deliver`: share deliveries in a process of their own, beside the stream workers.

The stream workers project and decide (:func:`hub.runtime.placement.worker_jobs`); with
``HUB_DELIVERY_MODE`` ``process`` they leave the rest to this process, which runs the jobs
:func:`hub.runtime.placement.deliverer_jobs` chooses in one :class:`hub.core.jobs.Runner`:

* **deliveries** — every ``poll`` seconds (50 ms) it claims what is due in ``deliveries`` (index on
  (state, next_attempt_at)) and delivers it with :func:`hub.sharing.delivery.deliver_due`: signed
  webhook POSTs, family copies, the inbox, retries. A pass that found work is followed by another
  at once. Rows are claimed under a lease (``next_attempt_at`` moved ahead), so any number of
  deliverers can run against one database and each share is sent by one of them.
* **chores** — by one deliverer at a time (a lease on the ``stream_cursors`` row ``sharing-chores``):
  every ``chores_every`` seconds (1 s), until it is done, the copy of what an earlier release left out
  of the audit log (:func:`hub.sharing.audit_trail.catch_up`; decisions are audited in their own
  transaction now); every ``escalate_every`` seconds (60) ``ack_overdue`` escalation; every
  ``HUB_SHARING_READINESS_INTERVAL`` seconds (300) the readiness sweep; the signed audit checkpoints.

A database or network failure is logged and retried with a growing pause (up to 30 s); nothing
stops the process but :meth:`Deliverer.stop` (SIGTERM), after which the pass in hand finishes, the
chores lease is given up and the HTTP client closed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from typing import Any

import httpx

from hub.core.jobs import Runner
from hub.core.logging import get_logger
from hub.core.settings import Settings
from hub.db.store import Store
from hub.runtime.placement import deliverer_jobs
from hub.runtime.probes import serve_probes
from hub.runtime.sharing_jobs import DeliveryJob
from hub.sharing.delivery import DeliveryStats

log = get_logger(__name__)
#: seconds between looks for due deliveries when the last pass found nothing
POLL = 0.05
#: seconds between chores (the audit catch-up; escalation and the readiness sweep have their own intervals)
CHORES_EVERY = 1.0
#: seconds between looks for unacknowledged deliveries (the deadline is hours: HUB_SHARING_ACK_HOURS)
ESCALATE_EVERY = 60.0
#: seconds without a finished delivery pass after which /healthz fails (a send times out in 10 s)
STUCK = 120.0


class Deliverer:
    """The jobs of one `hub deliver` process; ``client`` and ``store`` are injectable (tests drive it directly)."""

    def __init__(self, store: Store, client: httpx.AsyncClient | None = None, *, owner: str | None = None,
                 poll: float = POLL, chores_every: float = CHORES_EVERY, escalate_every: float = ESCALATE_EVERY,
                 limit: int = 500, concurrency: int = 32, settings: Settings | None = None) -> None:
        self.store = store
        self.owner = owner or f"deliverer-{socket.gethostname()}-{os.getpid()}"
        self.delivery = DeliveryJob(store, client, every=poll, limit=limit, concurrency=concurrency)
        self.runner = Runner(deliverer_jobs(store, self.owner, self.delivery, chores_every=chores_every,
                                            escalate_every=escalate_every, settings=settings))

    @property
    def totals(self) -> DeliveryStats:
        return self.delivery.totals

    @property
    def passes(self) -> int:
        """Delivery passes so far, failed or not."""
        return self.runner.health[self.delivery.name].passes

    @property
    def healthy(self) -> bool:
        """Whether the last delivery pass reached the database (readiness)."""
        return self.runner.health[self.delivery.name].ok

    def stop(self) -> None:
        """Finish the passes in hand, then return from :meth:`run`."""
        self.runner.stop()

    async def run(self) -> None:
        log.info("sharing.deliverer_started", owner=self.owner)
        try:
            await self.runner.run()
        finally:
            t = self.totals
            log.info("sharing.deliverer_stopped", owner=self.owner, passes=self.passes,
                     delivered=t.delivered, retried=t.retried, failed=t.failed)

    def probe(self, path: str) -> tuple[int, dict[str, Any]] | None:
        """``/healthz``: the delivery job turns (a pass within ``STUCK`` s); ``/readyz``: and reaches the database;
        ``/jobs``: every job's health."""
        since = time.monotonic() - self.runner.health[self.delivery.name].last_pass
        alive = since < STUCK
        if path == "/healthz":
            return (200 if alive else 503), {"status": "ok" if alive else "stuck",
                                             "seconds_since_pass": round(since, 1)}
        if path == "/readyz":
            ready = alive and self.healthy and not self.runner.stopping.is_set()
            return (200 if ready else 503), {"ready": ready, "passes": self.passes}
        if path == "/jobs":
            return 200, self.runner.report()
        return None


async def run_deliverer(store: Store, *, poll: float = POLL, probe_host: str = "0.0.0.0",
                        probe_port: int | None = None, settings: Settings | None = None) -> Deliverer:
    """Run until SIGTERM or SIGINT (the `hub deliver` process); probes on ``probe_port`` when given; with
    ``settings``, the chores include the audit checkpoint."""
    deliverer = Deliverer(store, poll=poll, settings=settings)
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
