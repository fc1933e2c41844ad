"""Is the broker reachable? One cheap metadata request every few seconds, as a background job.

The API process runs :class:`BrokerWatch` beside its outbox relay: ``/readyz`` answers 503 "broker
unreachable" while the last check failed, and the publisher refuses at once (503 with Retry-After)
instead of waiting out its request timeout; both recover by themselves at the first check that
succeeds. The producer itself reconnects on its own (aiokafka retries with back-off).

A check that fails while the broker acknowledged one of the publisher's sends during it, or in the
``WATCH_TIMEOUT`` seconds before it, does not count: under load (the broker and the hub on busy cores) a fresh
client's metadata request can outlast its timeout while the producer's own connection is answered,
and refusing every request then would turn a slow moment into an outage. A broker that is really gone
acknowledges nothing, so it is declared unreachable at the first failed check after its last ack.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError

from hub.core.jobs import Job
from hub.core.logging import get_logger
from hub.core.settings import Settings
from hub.kafka.publisher import Publisher
from hub.kafka.topics import client_args

log = get_logger(__name__)
#: seconds between checks
WATCH_EVERY = 1.0
#: seconds one check may take before the broker counts as unreachable
WATCH_TIMEOUT = 3.0
UNREACHABLE = "broker unreachable"


async def _connected(settings: Settings, bootstrap: str | None, timeout: float = WATCH_TIMEOUT) -> AIOKafkaClient:
    """A client that has fetched the cluster's metadata from the bootstrap servers within ``timeout``; raises
    (KafkaError, OSError, TimeoutError) after closing it if it could not."""
    client = AIOKafkaClient(**client_args(settings, bootstrap), request_timeout_ms=int(timeout * 1000))  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(client.bootstrap(), timeout)
    except BaseException:
        await client.close()
        raise
    return client


class BrokerWatch(Job):
    """Checks the broker every ``every`` seconds and tells the publisher (``publisher.unreachable``).

    The watch keeps one client between checks, each a metadata request on its open connection, rather than a
    new connection (and its handshake) every second; a failed check closes that client, and the next check
    connects afresh. A check cut short by its timeout leaves the connection to the client, closed with it."""

    def __init__(self, settings: Settings, publisher: Publisher, every: float = WATCH_EVERY) -> None:
        super().__init__("kafka.watch", every=every)
        self.settings = settings
        self.publisher = publisher
        self._client: AIOKafkaClient | None = None
        self._client_for: str | None = None

    async def _reachable(self) -> bool:
        bootstrap = self.publisher.bootstrap
        if self._client is not None and self._client_for != bootstrap:
            await self.close()
        try:
            if self._client is None:
                self._client, self._client_for = await _connected(self.settings, bootstrap), bootstrap
            else:
                await asyncio.wait_for(self._client.fetch_all_metadata(), WATCH_TIMEOUT)
            return True
        except (KafkaError, OSError, TimeoutError):
            await self.close()
            return False

    async def close(self) -> None:
        client, self._client, self._client_for = self._client, None, None
        if client is not None:
            await client.close()

    async def run_once(self) -> float | None:
        started = time.monotonic()
        ok = await self._reachable()
        acked = self.publisher.acknowledged_at
        if not ok and acked is not None and acked > started - WATCH_TIMEOUT:
            log.info("kafka.watch_slow")  # the check timed out, but the broker is answering the producer
            return None
        was = self.publisher.unreachable
        self.publisher.unreachable = None if ok else UNREACHABLE
        if was and ok:
            log.info("kafka.broker_back")
        elif ok is False and not was:
            log.warning("kafka.broker_unreachable")
        return None
