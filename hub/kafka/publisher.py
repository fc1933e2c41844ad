"""Publishing to Kafka: one aiokafka producer with acks=all (and idempotence where the broker allows)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    UnknownError,
)
from aiokafka.partitioner import DefaultPartitioner, murmur2
from opentelemetry.trace import SpanKind

from hub.core.errors import BrokerError, RecordsRefusedError
from hub.core.logging import get_logger
from hub.core.settings import Settings
from hub.core.tracing import tracer
from hub.kafka.topics import client_args

log = get_logger(__name__)
#: what the producer or the broker answers for a record no retry will get through
TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)


@dataclass(frozen=True)
class OutgoingRecord:
    topic: str
    key: str
    value: bytes
    headers: list[tuple[str, bytes]]


class CachingPartitioner:
    """aiokafka's default partitioner (murmur2 of the key, as the Java client), remembering each key's hash.

    The key is the subject's pseudonym and one child has many events; murmur2 is pure Python in
    aiokafka. Records without a key are left to the default partitioner.
    """

    def __init__(self, max_keys: int = 65536) -> None:
        self._hashes: dict[bytes, int] = {}
        self._max_keys = max_keys

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return DefaultPartitioner()(key, all_partitions, available)  # type: ignore[no-any-return]
        idx = self._hashes.get(key)
        if idx is None:
            if len(self._hashes) >= self._max_keys:
                self._hashes.clear()
            idx = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return all_partitions[idx % len(all_partitions)]


class Publisher:
    def __init__(self, settings: Settings, bootstrap: str | None = None) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self._producer: AIOKafkaProducer | None = None
        #: why the broker is unreachable, as the last check found (:class:`hub.kafka.watch.BrokerWatch`)
        self.unreachable: str | None = None
        #: when (``time.monotonic()``) the broker last acknowledged a publish
        self.acknowledged_at: float | None = None

    async def start(self) -> None:
        """Connect (inside the event loop that will publish)."""
        if self._producer is not None:
            return
        idempotent = self.settings.idempotent_producer
        try:
            self._producer = await self._connect(idempotent)
        except UnknownError:
            if not idempotent:
                raise BrokerError("cannot connect a producer to Kafka: the broker answered UnknownError") from None
            # The embedded broker (and some Kafka-compatible ones) refuse InitProducerId. Delivery stays
            # acks=all and at-least-once; duplicates are removed downstream by event id and version.
            log.warning("publisher.idempotence_refused", bootstrap=self.bootstrap or self.settings.kafka_bootstrap)
            self._producer = await self._connect(False)

    async def _connect(self, idempotent: bool) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            **client_args(self.settings, self.bootstrap),  # type: ignore[arg-type]
            acks="all",
            enable_idempotence=idempotent,
            linger_ms=2,
            partitioner=CachingPartitioner(),
            max_batch_size=256 * 1024,
            max_request_size=self.settings.kafka_max_request_bytes,
            request_timeout_ms=15000,
        )
        try:
            await producer.start()
        except UnknownError:
            await producer.stop()
            raise
        except KafkaError as exc:
            await producer.stop()
            raise BrokerError(f"cannot connect a producer to Kafka: {exc}") from exc
        return producer

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def publish(self, records: Sequence[OutgoingRecord]) -> None:
        """Send every record and return only when the broker acknowledged all of them.

        A failure a retry may cure (no connection, a timeout) is a :class:`BrokerError`. Records the
        producer or the broker refuses as too large are a :class:`RecordsRefusedError` raised after
        every other record was acknowledged, so the caller can dead-letter them and move on.
        One ``publish`` span (a child of the caller's, :mod:`hub.core.tracing`) covers the batch.
        """
        topics = sorted({r.topic for r in records})
        with tracer().start_as_current_span(
                f"publish {topics[0]}" if len(topics) == 1 else "publish", kind=SpanKind.PRODUCER,
                attributes={"messaging.system": "kafka", "messaging.operation.type": "publish",
                            "messaging.destination.name": ",".join(topics),
                            "messaging.batch.message_count": len(records)}):
            await self._publish(records)

    async def _publish(self, records: Sequence[OutgoingRecord]) -> None:
        if self._producer is None:
            raise BrokerError("the publisher is not connected to Kafka")
        if self.unreachable:  # refuse at once rather than wait out the request timeout; retrying cures it
            raise BrokerError(f"the broker did not acknowledge {len(records)} record(s): {self.unreachable}")
        refused: dict[int, str] = {}
        futures: dict[int, asyncio.Future[object]] = {}
        try:
            for i, r in enumerate(records):
                try:
                    futures[i] = await self._producer.send(r.topic, r.value, key=r.key.encode(), headers=r.headers)
                except TOO_LARGE as exc:
                    refused[i] = type(exc).__name__
            outcomes = await asyncio.gather(*futures.values(), return_exceptions=True)
        except KafkaError as exc:
            raise BrokerError(f"the broker did not acknowledge {len(records)} record(s): {exc}") from exc
        failed = None
        for i, outcome in zip(futures, outcomes, strict=True):
            if isinstance(outcome, TOO_LARGE):
                refused[i] = type(outcome).__name__
            elif isinstance(outcome, BaseException):
                failed = outcome
        if failed is not None:
            raise BrokerError(f"the broker did not acknowledge {len(records)} record(s): {failed}") from failed
        if futures:
            self.acknowledged_at = time.monotonic()
        if refused:
            raise RecordsRefusedError(dict(sorted(refused.items())))
