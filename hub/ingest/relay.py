"""The outbox relay: publish what the ingest log holds and the broker has not acknowledged.

An accepted event whose publish failed stays unpublished in the ingest log (:mod:`hub.ingest.service`);
the relay publishes such rows later, in acceptance order — once at start-up (`hub up`) and every few
seconds in the API process (:class:`RelayJob`). A row the broker refuses for good (too large) is
dead-lettered and passed by (:mod:`hub.ingest.refusals`), so it cannot hold back the rows after it;
every failed pass is logged with the error class and how many rows wait, never their content.
"""

from __future__ import annotations

import asyncio

from hub.core.errors import BrokerError, RecordsRefusedError
from hub.core.jobs import Job
from hub.core.logging import get_logger
from hub.db.store import Store
from hub.ingest.refusals import dead_letter
from hub.ingest.service import publishing_now
from hub.kafka.publisher import OutgoingRecord, Publisher

log = get_logger(__name__)

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
        records = [OutgoingRecord(r.topic, r.key, r.value, r.headers) for r in batch]
        refused: dict[int, str] = {}
        try:
            await publisher.publish(records)
        except RecordsRefusedError as exc:
            refused = exc.refused
            await dead_letter(store, publisher, [(batch[i].seq, records[i], why) for i, why in refused.items()])
        except BrokerError as exc:
            log.warning("ingest.relay_failed", error=type(exc).__name__, records=len(batch))
            raise
        await asyncio.to_thread(store.mark_published, [r.seq for i, r in enumerate(batch) if i not in refused])
        total += len(batch) - len(refused)
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
