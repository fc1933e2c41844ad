"""The stream worker's heartbeat: its state and progress in ``worker_status``, for `hub up` and the API's /readyz."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from hub.core.jobs import Job
from hub.db.store import Store

#: seconds between heartbeats (the API counts a worker ready for 10 s after its last one)
EVERY = 1.0


class HeartbeatJob(Job):
    """Record ``state()`` and ``processed()`` for ``worker_id`` every second; a failure is retried the next second."""

    def __init__(self, store: Store, worker_id: str, state: Callable[[], str], processed: Callable[[], int],
                 every: float = EVERY) -> None:
        super().__init__("worker.heartbeat", every=every, max_pause=every)
        self.store = store
        self.worker_id = worker_id
        self.state = state
        self.processed = processed

    async def run_once(self) -> float | None:
        await asyncio.to_thread(self.store.heartbeat, self.worker_id, self.state(), self.processed())
        return None
