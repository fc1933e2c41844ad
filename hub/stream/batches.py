"""Decoding and projecting one batch of ingest records: what a stream worker does with each batch.

Each batch from the ingest topics is opened and decoded with the sealing serde (:mod:`hub.wire.sealing`);
a record of an erased subject (its data key shredded) is skipped and counted, never dead-lettered;
a record that cannot be decoded (bad framing, unknown fingerprint, corrupt body, a sealed value
that fails authentication) is dead-lettered — recorded in the database and republished to
``hub.deadletter`` with ``__connect.errors.*`` headers — and the stream moves on, so a poison message
never stops it or loops. Decoded records go to :mod:`hub.stream.projection` in one transaction per
batch, with the next offset of each partition the batch came from (``stream_offsets``), so the
projection and its position in the stream commit or vanish together; projections are idempotent, so a
batch redelivered after a crash or a rebalance (Kafka's committed offsets may lag the database's)
changes nothing twice. Batches of one partition commit one after the other across workers (each batch's
transaction claims its partitions first, :mod:`hub.stream.claims`), and records a worker applied meanwhile
are skipped. Decoding, unsealing and building the rows run in a thread, off the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from hub.core.errors import ErasedRecordError, SerdeError
from hub.core.logging import get_logger
from hub.core.tracing import continued
from hub.db.store import Store
from hub.kafka.publisher import OutgoingRecord, Publisher
from hub.kafka.topics import DEADLETTER
from hub.stream import projection
from hub.wire.envelope import deadletter_headers
from hub.wire.schemas import SchemaCatalogue
from hub.wire.serde import Serde

log = get_logger(__name__)


class Processor:
    """Decode-and-project logic of one worker, independent of faust so replay and tests share it."""

    def __init__(self, store: Store, serde: Serde, catalogue: SchemaCatalogue, publisher: Publisher | None,
                 on_projected: Callable[[], None] | None = None) -> None:
        self.store = store
        self.on_projected = on_projected
        self.serde = serde
        self.catalogue = catalogue
        self.publisher = publisher
        self.processed = 0
        self.dead_lettered = 0
        self.erased = 0

    async def handle(self, messages: list[tuple[str, int, int, bytes | None, bytes, list[tuple[str, bytes]]]]) -> None:
        """Decode, dead-letter and project one batch in a thread (the event loop keeps fetching and
        heartbeating meanwhile), then publish its dead letters; inside ``project`` spans continuing the
        traces the records' ``traceparent`` headers carry (:func:`hub.core.tracing.continued`)."""
        with continued("project", [m[5] for m in messages],
                       attributes={"messaging.system": "kafka", "messaging.operation.type": "process"}):
            projected, dead = await asyncio.to_thread(self.project, messages)
        if projected and self.on_projected is not None:
            self.on_projected()
        if dead and self.publisher is not None:
            await self.publisher.publish(dead)
        self.processed += len(messages)

    def project(self, messages: list[tuple[str, int, int, bytes | None, bytes, list[tuple[str, bytes]]]]
                ) -> tuple[int, list[OutgoingRecord]]:
        """Blocking part of :meth:`handle`: (records projected, dead letters to publish)."""
        decoded: list[tuple[str, str, dict[str, Any]]] = []
        positions: list[tuple[str, int, int]] = []
        dead: list[OutgoingRecord] = []
        offsets: dict[tuple[str, int], int] = {}
        for topic, partition, offset, key, value, headers in messages:
            if offset + 1 > offsets.get((topic, partition), -1):
                offsets[(topic, partition)] = offset + 1
            try:
                d = self.serde.decode(value)
                decoded.append((d.record_type, self.catalogue.writer(d.record_type).ce_type, d.record))
                positions.append((topic, partition, offset))
            except ErasedRecordError:  # the subject's data key was shredded: skip, never dead-letter
                self.erased += 1
                log.info("worker.erased_record_skipped", topic=topic, partition=partition, offset=offset)
            except SerdeError as exc:
                key_text = key.decode(errors="replace") if key else None
                new = self.store.add_dead_letter(topic=topic, partition=partition, offset=offset, key=key_text,
                                                 value=value, headers=headers, error=exc)
                if new:
                    self.dead_lettered += 1
                    dead.append(OutgoingRecord(DEADLETTER.name, key_text or "", value,
                                               deadletter_headers(headers, topic, partition, offset, exc)))
                log.warning("worker.dead_lettered", topic=topic, partition=partition, offset=offset,
                            error=type(exc).__name__, reason=str(exc))
        if decoded or offsets:
            projection.apply(self.store, decoded, offsets=offsets, positions=positions)
        return len(decoded), dead
