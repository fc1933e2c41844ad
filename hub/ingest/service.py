"""The acceptance contract: validate, pseudonymise, record durably, publish, then acknowledge.

1. Each :class:`~hub.events.InboundEvent` becomes an Avro record (meta + body). Its hub event id is
   derived from (source system, source id), so every version of one source record shares it.
2. The same (source system, source id, version) sent again is the same event: it is not recorded or
   published twice, and the sender gets the same event id back (``status="duplicate"``).
   The Avro bytes are sealed with the subject's data key when the service's serde is the sealing
   one (:mod:`hub.sealing`, as :class:`hub.services.Services` builds it), so the log and Kafka hold
   only ciphertext that an erasure can shred.
3. New versions are appended to the ingest log (the hub's durable record) and then published with
   acks=all; the sender is answered only after the broker acknowledged. If publishing fails the row
   stays unpublished and the outbox relay (:func:`hub.ingest.relay.relay_unpublished`) publishes it later; the
   sender sees an error and may retry safely.
4. Concurrent requests: the unique (source system, source id, version) constraint logs an event
   once whatever the interleaving (``INSERT ... ON CONFLICT DO NOTHING``); within one process a
   request carrying an event another request is still publishing waits for it instead of
   publishing it again, and the relay leaves such rows to that request.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa

from connectors.identifiers import PSEUDONYM_SYSTEM
from hub.core.errors import HubError, Problem, ValidationError
from hub.core.events import InboundEvent
from hub.core.logging import get_logger
from hub.db.store import LogRecord, Store, utcnow
from hub.kafka.publisher import OutgoingRecord, Publisher
from hub.kafka.topics import topic_for
from hub.wire import envelope
from hub.wire.schemas import SchemaCatalogue
from hub.wire.serde import Serde

log = get_logger(__name__)
EVENT_NAMESPACE = uuid.UUID("6f1c1b8e-8a51-4bb7-9d6e-2f43c3b1f0a1")


_NAMESPACE_BYTES = EVENT_NAMESPACE.bytes


def event_id_for(source_system: str, source_id: str) -> str:
    """``uuid5(EVENT_NAMESPACE, source_system US source_id)`` (RFC 4122 name-based, SHA-1), computed directly."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + f"{source_system}\x1f{source_id}".encode(),
                                    usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


#: Source keys being appended and published right now, per store (so per database), each with the
#: future its request completes when it is done. A concurrent request with the same event waits for
#: it instead of publishing the event a second time; the relay leaves those rows to their request.
_IN_FLIGHT: weakref.WeakKeyDictionary[Store, dict[tuple[str, str, int], asyncio.Future[None]]] = (
    weakref.WeakKeyDictionary())


def publishing_now(store: Store) -> dict[tuple[str, str, int], asyncio.Future[None]]:
    """The source keys a request of this process is appending and publishing right now, for ``store``."""
    table = _IN_FLIGHT.get(store)
    if table is None:
        table = _IN_FLIGHT[store] = {}
    return table


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


def _producing_agency(body: dict[str, Any]) -> str | None:
    """The agency that produced a record (its service's or school's agency id), kept for retention."""
    service = body.get("service") or body.get("school")
    agency = service.get("agency_id") if isinstance(service, dict) else None
    return str(agency)[:120] if agency else None


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
        builder = envelope.HeaderBuilder(received)
        out: list[Prepared | None] = []
        problems: list[Problem] = []
        for i, ev in enumerate(events):
            try:
                out.append(self._prepare_one(ev, received, builder))
            except (HubError, ValueError) as exc:
                out.append(None)
                problems.append(Problem(f"[{i}]", str(exc)))
        return out, problems

    def _prepare_one(self, ev: InboundEvent, received: datetime, builder: envelope.HeaderBuilder) -> Prepared:
        schema = self.catalogue.writer(ev.record_type)
        if ev.source_version < 1:
            raise ValueError("source_version must be 1 or more")
        subject = (ev.subject.value if ev.subject.system == PSEUDONYM_SYSTEM
                   else self.pseudonymise(ev.subject.system, ev.subject.value))
        event_id = event_id_for(ev.source_system, ev.source_id)
        occurred = _as_utc(ev.occurred_at)
        meta = {
            "event_id": event_id, "source_system": ev.source_system, "source_id": ev.source_id,
            "source_version": ev.source_version, "occurred_at": occurred, "received_at": received,
            "subject": subject, "category": ev.category, "status": ev.status, "mapping": ev.mapping,
        }
        value = self.serde.encode(ev.record_type, {"meta": meta, **ev.body})
        topic = topic_for(ev.record_type, ev.sector).name
        headers = builder.build(event_id, ev.source_version, ev.source_system, schema.ce_type, occurred, subject)
        row = dict(event_id=event_id, source_system=ev.source_system, source_id=ev.source_id,
                   source_version=ev.source_version, record_type=ev.record_type, topic=topic, key=subject,
                   value=value, headers=headers, occurred_at=occurred, received_at=received, published_at=None,
                   agency_id=_producing_agency(ev.body))
        return Prepared((ev.source_system, ev.source_id, ev.source_version), row)

    async def accept(self, events: Sequence[InboundEvent], *,
                     then: Callable[[sa.Connection], object] | None = None) -> list[Acceptance]:
        """Accept a batch all-or-nothing at validation; see the module docstring for the contract.

        ``then(conn)`` runs in the transaction that logs the batch (the audit record of a change made
        through the API): if it raises, nothing is accepted and the error propagates.
        """
        prepared, problems = self.prepare(events)
        if problems:
            raise ValidationError(problems, title="Events do not fit the hub's record schemas")
        return await self.accept_prepared([p for p in prepared if p is not None], then=then)

    async def accept_prepared(self, prepared: Sequence[Prepared], *,
                              then: Callable[[sa.Connection], object] | None = None) -> list[Acceptance]:
        for attempt in range(3):
            try:
                return await self._accept(prepared, then)
            except sa.exc.IntegrityError:
                if attempt == 2:
                    raise
                log.info("ingest.concurrent_duplicate_retry", attempt=attempt)
        raise AssertionError("unreachable")

    async def _accept(self, prepared: Sequence[Prepared],
                      then: Callable[[sa.Connection], object] | None = None) -> list[Acceptance]:
        fresh: dict[tuple[str, str, int], Prepared] = {}
        for p in prepared:
            fresh.setdefault(p.source_key, p)
        in_flight = publishing_now(self.store)
        loop = asyncio.get_running_loop()
        # The same event in a concurrent request of this process: wait until that request is done
        # (published, or failed and left unpublished), then look at the log like any resend.
        while waits := {f for k in fresh if (f := in_flight.get(k)) is not None and f.get_loop() is loop}:
            await asyncio.gather(*waits, return_exceptions=True)
        done: asyncio.Future[None] = loop.create_future()
        for key in fresh:
            in_flight[key] = done
        try:
            # One statement: rows already in the log (also when a concurrent transaction inserted
            # them first) are skipped by the unique constraint and come back with seq 0.
            seqs = await asyncio.to_thread(self.store.append, [p.row for p in fresh.values()], skip_existing=True,
                                           then=then)
            inserted = {key: seq for key, seq in zip(fresh, seqs, strict=True) if seq}
            # Duplicates whose first copy never reached the broker are published now, before the answer.
            stale: list[LogRecord] = []
            if len(inserted) < len(fresh):
                existing = [key for key in fresh if key not in inserted]
                stale = [r for r in await asyncio.to_thread(self.store.log_by_source, existing) if not r.published]
            outgoing = [fresh[key].outgoing for key in inserted]
            outgoing += [OutgoingRecord(r.topic, r.key, r.value, r.headers) for r in stale]
            if outgoing:
                await self.publisher.publish(outgoing)
                await asyncio.to_thread(self.store.mark_published, [*inserted.values(), *(r.seq for r in stale)])
        finally:
            for key in fresh:
                if in_flight.get(key) is done:
                    del in_flight[key]
            done.set_result(None)
        first = set()
        result = []
        for p in prepared:
            is_new = p.source_key in inserted and p.source_key not in first
            first.add(p.source_key)
            result.append(Acceptance(p.row["event_id"], p.source_key[2], "accepted" if is_new else "duplicate",
                                     p.row["topic"]))
        log.info("ingest.accepted", accepted=len(inserted), duplicates=len(prepared) - len(inserted))
        return result
