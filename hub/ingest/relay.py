"""The outbox relay: publish what the ingest log holds and the broker has not acknowledged.

An accepted event whose publish failed stays unpublished in the ingest log (:mod:`hub.ingest.service`);
the relay publishes such rows later, in acceptance order — once at start-up (`hub up`) and every few
seconds in the API process (:class:`RelayJob`).
"""

from __future__ import annotations

import asyncio

from hub.core.jobs import Job
from hub.db.store import Store
from hub.ingest.service import publishing_now
from hub.kafka.publisher import OutgoingRecord, Publisher

#: seconds between relay passes in the API process
RELAY_EVERY = 5.0


async def relay_unpublished(store: Store, publisher: Publisher) -> int:
    """Publish every ingest-log row the broker has not acknowledged yet, in acceptance order."""
    total = 0
    in_flight = publishing_now(store)
    for batch in store.iter_log(unpublished_only=True, batch=2000):
        # rows a request of this process is publishing right now are left to it (it marks them, or
        # leaves them unpublished for the next relay if the broker fails)
        batch = [r for r in batch if (r.source_system, r.source_id, r.source_version) not in in_flight]
        if not batch:
            continue
        await publisher.publish([OutgoingRecord(r.topic, r.key, r.value, r.headers) for r in batch])
        await asyncio.to_thread(store.mark_published, [r.seq for r in batch])
        total += len(batch)
    return total


class RelayJob(Job):
    """Relay unpublished events every ``every`` seconds, the first time one interval after start."""

    def __init__(self, store: Store, publisher: Publisher, every: float = RELAY_EVERY) -> None:
        super().__init__("ingest.relay", every=every, first_after=every)
        self.store = store
        self.publisher = publisher

    async def run_once(self) -> float | None:
        await relay_unpublished(self.store, self.publisher)
        return None
