"""The acceptance contract: validate, pseudonymise, record durably, publish, then acknowledge.

1. Each :class:`~hub.events.InboundEvent` becomes an Avro record (meta + body). Its hub event id is
   derived from (source system, source id), so every version of one source record shares it.
2. The same (source system, source id, version) sent again is the same event: it is not recorded or
   published twice, and the sender gets the same event id back (``status="duplicate"``).
3. New versions are appended to the ingest log (the hub's durable record) and then published with
   acks=all; the sender is answered only after the broker acknowledged. If publishing fails the row
   stays unpublished and the outbox relay (:func:`relay_unpublished`) publishes it later; the
   sender sees an error and may retry safely.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa

from hub import envelope
from hub.errors import HubError, Problem, ValidationError
from hub.events import InboundEvent
from hub.logging import get_logger
from hub.publisher import OutgoingRecord, Publisher
from hub.schemas import SchemaCatalogue
from hub.serde import Serde
from hub.store import LogRecord, Store, utcnow
from hub.topics import topic_for

log = get_logger(__name__)
EVENT_NAMESPACE = uuid.UUID("6f1c1b8e-8a51-4bb7-9d6e-2f43c3b1f0a1")


def event_id_for(source_system: str, source_id: str) -> str:
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{source_system}\x1f{source_id}"))


@dataclass(frozen=True)
class Acceptance:
    event_id: str
    source_version: int
    status: Literal["accepted", "duplicate"]
    topic: str


@dataclass(frozen=True)
class Prepared:
    source_key: tuple[str, str, int]
    row: dict[str, Any]

    @property
    def outgoing(self) -> OutgoingRecord:
        r = self.row
        return OutgoingRecord(r["topic"], r["key"], r["value"], r["headers"])


def _as_utc(ts: datetime) -> datetime:
    if ts.tzinfo is None:
        raise ValueError("timestamp has no time zone")
    return ts.astimezone(UTC)


class IngestService:
    def __init__(self, store: Store, catalogue: SchemaCatalogue, serde: Serde, publisher: Publisher,
                 pseudonymise: Callable[[str, str], str], clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.catalogue = catalogue
        self.serde = serde
        self.publisher = publisher
        self.pseudonymise = pseudonymise
        self.clock = clock

    def prepare(self, events: Sequence[InboundEvent]) -> tuple[list[Prepared | None], list[Problem]]:
        """Encode each event; problems are located by the event's index in ``events``."""
        received = self.clock()
        out: list[Prepared | None] = []
        problems: list[Problem] = []
        for i, ev in enumerate(events):
            try:
                out.append(self._prepare_one(ev, received))
            except (HubError, ValueError) as exc:
                out.append(None)
                problems.append(Problem(f"[{i}]", str(exc)))
        return out, problems

    def _prepare_one(self, ev: InboundEvent, received: datetime) -> Prepared:
        schema = self.catalogue.writer(ev.record_type)
        if ev.source_version < 1:
            raise ValueError("source_version must be 1 or more")
        subject = self.pseudonymise(ev.subject.system, ev.subject.value)
        event_id = event_id_for(ev.source_system, ev.source_id)
        occurred = _as_utc(ev.occurred_at)
        meta = {
            "event_id": event_id, "source_system": ev.source_system, "source_id": ev.source_id,
            "source_version": ev.source_version, "occurred_at": occurred, "received_at": received,
            "subject": subject, "category": ev.category, "status": ev.status, "mapping": ev.mapping,
        }
        value = self.serde.encode(ev.record_type, {"meta": meta, **ev.body})
        topic = topic_for(ev.record_type, ev.sector).name
        headers = envelope.headers(event_id=event_id, version=ev.source_version, source_system=ev.source_system,
                                   ce_type=schema.ce_type, occurred_at=occurred, subject=subject,
                                   received_at=received)
        row = dict(event_id=event_id, source_system=ev.source_system, source_id=ev.source_id,
                   source_version=ev.source_version, record_type=ev.record_type, topic=topic, key=subject,
                   value=value, headers=headers, occurred_at=occurred, received_at=received, published_at=None)
        return Prepared((ev.source_system, ev.source_id, ev.source_version), row)

    async def accept(self, events: Sequence[InboundEvent]) -> list[Acceptance]:
        """Accept a batch all-or-nothing at validation; see the module docstring for the contract."""
        prepared, problems = self.prepare(events)
        if problems:
            raise ValidationError(problems, title="Events do not fit the hub's record schemas")
        return await self.accept_prepared([p for p in prepared if p is not None])

    async def accept_prepared(self, prepared: Sequence[Prepared]) -> list[Acceptance]:
        for attempt in range(3):
            try:
                return await self._accept(prepared)
            except sa.exc.IntegrityError:
                if attempt == 2:
                    raise
                log.info("ingest.concurrent_duplicate_retry", attempt=attempt)
        raise AssertionError("unreachable")

    async def _accept(self, prepared: Sequence[Prepared]) -> list[Acceptance]:
        existing = await asyncio.to_thread(self.store.existing_versions, {p.source_key for p in prepared})
        fresh: dict[tuple[str, str, int], Prepared] = {}
        for p in prepared:
            if p.source_key not in existing:
                fresh.setdefault(p.source_key, p)
        seqs = await asyncio.to_thread(self.store.append, [p.row for p in fresh.values()])
        # Duplicates whose first copy never reached the broker are published now, before the answer.
        stale: list[LogRecord] = []
        if existing:
            stale = [r for r in await asyncio.to_thread(self.store.log_by_source, existing) if not r.published]
        outgoing = [p.outgoing for p in fresh.values()]
        outgoing += [OutgoingRecord(r.topic, r.key, r.value, r.headers) for r in stale]
        if outgoing:
            await self.publisher.publish(outgoing)
            await asyncio.to_thread(self.store.mark_published, [*seqs, *(r.seq for r in stale)])
        first = set()
        result = []
        for p in prepared:
            is_new = p.source_key in fresh and p.source_key not in first
            first.add(p.source_key)
            result.append(Acceptance(p.row["event_id"], p.source_key[2], "accepted" if is_new else "duplicate",
                                     p.row["topic"]))
        log.info("ingest.accepted", accepted=len(fresh), duplicates=len(prepared) - len(fresh))
        return result


async def relay_unpublished(store: Store, publisher: Publisher) -> int:
    """Publish every ingest-log row the broker has not acknowledged yet, in acceptance order."""
    total = 0
    for batch in store.iter_log(unpublished_only=True, batch=2000):
        await publisher.publish([OutgoingRecord(r.topic, r.key, r.value, r.headers) for r in batch])
        await asyncio.to_thread(store.mark_published, [r.seq for r in batch])
        total += len(batch)
    return total
