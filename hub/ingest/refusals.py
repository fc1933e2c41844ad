"""Logged records the broker refuses for good (too large): dead-lettered so the outbox moves on.

Such a record is kept whole in ``dead_letters`` (offset ``-seq``, the ingest-log row, as ``hub replay``
records its dead letters), announced on ``hub.deadletter`` with the Kafka Connect error headers and an
empty value (the value is what the broker refused), and its ingest-log row is marked refused, so
neither the relay nor a re-seeded broker tries it again. The log line says how many and why, never
what they hold.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from hub.core.errors import BrokerError, RecordsRefusedError
from hub.core.logging import get_logger
from hub.db.store import Store
from hub.kafka.publisher import OutgoingRecord, Publisher
from hub.kafka.topics import DEADLETTER
from hub.wire.envelope import deadletter_headers

log = get_logger(__name__)


def _record(store: Store, refused: Sequence[tuple[int, OutgoingRecord, str]]) -> list[OutgoingRecord]:
    notices = []
    for seq, rec, reason in refused:
        error = RecordsRefusedError({0: reason})
        store.add_dead_letter(topic=rec.topic, partition=None, offset=-seq, key=rec.key, value=rec.value,
                              headers=rec.headers, error=error)
        notices.append(OutgoingRecord(DEADLETTER.name, rec.key, b"",
                                      [*deadletter_headers(rec.headers, rec.topic, -1, -seq, error),
                                       ("hub.ingest.seq", str(seq).encode())]))
    store.mark_refused([seq for seq, _, _ in refused])
    return notices


async def dead_letter(store: Store, publisher: Publisher, refused: Sequence[tuple[int, OutgoingRecord, str]]) -> None:
    """Dead-letter ``(ingest-log seq, record, broker's reason)`` triples and mark their rows refused."""
    if not refused:
        return
    notices = await asyncio.to_thread(_record, store, refused)
    reasons = sorted({why for _, _, why in refused})
    log.warning("ingest.dead_lettered", records=len(refused), error=",".join(reasons))
    try:
        await publisher.publish(notices)
    except (BrokerError, RecordsRefusedError) as exc:  # the dead_letters row is the durable record
        log.warning("ingest.deadletter_notice_failed", error=type(exc).__name__, records=len(notices))
