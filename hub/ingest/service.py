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
5. A resend is told apart from a change by a keyed digest of the content: the same version with
   other content is a ``conflict`` (never logged; :class:`~hub.core.errors.ConflictError` names the
   event id), a version lower than one already logged is answered ``stale`` and not logged.
6. Nothing can block the outbox: a record larger than the broker takes is refused before it is
   logged (:class:`~hub.core.errors.RecordTooLargeError`); one the broker still refuses after it was
   logged is dead-lettered (:mod:`hub.ingest.refusals`) and answered ``refused``; the rest flows.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa

from connectors.identifiers import PSEUDONYM_SYSTEM
from hub.core.errors import ConflictError, HubError, Problem, RecordsRefusedError, RecordTooLargeError, ValidationError
from hub.core.events import InboundEvent
from hub.core.limits import LONG_MAX
from hub.core.logging import get_logger
from hub.db.store import LogRecord, Store, utcnow
from hub.ingest.refusals import dead_letter
from hub.kafka.publisher import OutgoingRecord, Publisher
from hub.kafka.topics import topic_for
from hub.wire import envelope
from hub.wire.schemas import SchemaCatalogue
from hub.wire.sealing import SealingSerde
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


#: accepted (new), duplicate (a resend), stale (lower than a logged version: not logged), conflict
#: (a logged version with other content: not logged), refused (logged, refused by the broker, dead-lettered)
Status = Literal["accepted", "duplicate", "stale", "conflict", "refused"]


@dataclass(frozen=True)
class Acceptance:
    event_id: str
    source_version: int
    status: Status
    topic: str


def conflict_message(event_id: str, version: int) -> str:
    return (f"event {event_id} version {version} was accepted with other content; "
            "send a higher source_version to change it")


def refused_message(event_id: str) -> str:
    return f"the broker refused event {event_id} as too large; it was dead-lettered"


def _plain_digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()[:40]


#: a UTC time written ``+00:00`` (a FHIR JSON resource) or ``Z`` (the same resource read from XML)
_UTC_SPELLING = re.compile(r"(T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\+00:00")


def _content(ev: InboundEvent, subject: str, occurred: datetime) -> bytes:
    """What a resend must repeat to be the same event version (not when it was received, nor how
    it spelt UTC)."""
    text = json.dumps([ev.record_type, ev.sector, subject, occurred.isoformat(), ev.category, ev.status,
                       ev.body], sort_keys=True, default=str)
    return _UTC_SPELLING.sub(r"\1Z", text).encode()


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
                 pseudonymise: Callable[[str, str], str], clock: Callable[[], datetime] = utcnow, *,
                 max_record_bytes: int | None = None, content_digest: Callable[[bytes], str] | None = None) -> None:
        self.store = store
        #: the largest sealed record (value, key and headers) accepted; None: no limit
        self.max_record_bytes = max_record_bytes
        self.content_digest = content_digest or _plain_digest
        self.catalogue = catalogue
        self.serde = serde
        self.publisher = publisher
        self.pseudonymise = pseudonymise
        self.clock = clock

    def prepare(self, events: Sequence[InboundEvent]) -> tuple[list[Prepared | None], list[Problem]]:
        """Encode each event; problems are located by the event's index in ``events``."""
        received = self.clock()
        builder = envelope.HeaderBuilder(received, self.serde.content_type)
        out: list[Prepared | None] = []
        problems: list[Problem] = []
        subjects = [self._keyable(ev) for ev in events]
        if isinstance(self.serde, SealingSerde):  # the batch's subjects' keys at once, not one query a subject
            self.serde.prefetch({s for s in subjects if s is not None})
        for i, ev in enumerate(events):
            try:
                out.append(self._prepare_one(ev, received, builder, subjects[i]))
            except RecordTooLargeError as exc:
                out.append(None)
                problems += [Problem(f"[{i}]", p.message, status=413) for p in exc.problems]
            except (HubError, ValueError, OverflowError) as exc:
                out.append(None)
                problems.append(Problem(f"[{i}]", str(exc)))
        return out, problems

    def _keyable(self, ev: InboundEvent) -> str | None:
        """The event's subject as the hub keys it, or None when it cannot be keyed (the event then fails in its
        own turn, with its other problems, in :meth:`_prepare_one`)."""
        try:
            return self._subject(ev)
        except (HubError, ValueError):
            return None

    def _subject(self, ev: InboundEvent) -> str:
        """The event's subject as the hub keys it: its pseudonym."""
        return (ev.subject.value if ev.subject.system == PSEUDONYM_SYSTEM
                else self.pseudonymise(ev.subject.system, ev.subject.value))

    def _prepare_one(self, ev: InboundEvent, received: datetime, builder: envelope.HeaderBuilder,
                     subject: str | None) -> Prepared:
        schema = self.catalogue.writer(ev.record_type)
        if not 1 <= ev.source_version <= LONG_MAX:
            raise ValueError("source_version must be from 1 to 2^63 - 1")
        subject = subject if subject is not None else self._subject(ev)
        event_id = event_id_for(ev.source_system, ev.source_id)
        occurred = _as_utc(ev.occurred_at)
        meta = {
            "event_id": event_id, "source_system": ev.source_system, "source_id": ev.source_id,
            "source_version": ev.source_version, "occurred_at": occurred, "received_at": received,
            "subject": subject, "category": ev.category, "status": ev.status, "mapping": ev.mapping,
        }
        # one Avro encoding per event: the body's bytes from the connector's check, where it made them
        # with the schema this hub writes, else the whole record here
        body = ev.encoded_body()
        value = (self.serde.encode_body(ev.record_type, meta, body) if body is not None
                 and self.catalogue.shipped(ev.record_type) else self.serde.encode(ev.record_type, {"meta": meta,
                                                                                                    **ev.body}))
        topic = topic_for(ev.record_type, ev.sector).name
        headers = builder.build(event_id, ev.source_version, ev.source_system, schema.ce_type, occurred, subject,
                                self.catalogue.dataschema(ev.record_type))
        row = dict(event_id=event_id, source_system=ev.source_system, source_id=ev.source_id,
                   source_version=ev.source_version, record_type=ev.record_type, topic=topic, key=subject,
                   value=value, headers=headers, occurred_at=occurred, received_at=received, published_at=None,
                   agency_id=_producing_agency(ev.body),
                   content_digest=self.content_digest(_content(ev, subject, occurred)))
        size = len(value) + len(subject) + sum(len(k) + len(v) for k, v in headers)
        if self.max_record_bytes is not None and size > self.max_record_bytes:
            raise RecordTooLargeError(Problem("", f"the record is {size} bytes sealed; one record may be at most "
                                                  f"{self.max_record_bytes} bytes (the broker's limit less headroom)"))
        return Prepared((ev.source_system, ev.source_id, ev.source_version), row)

    async def accept(self, events: Sequence[InboundEvent], *,
                     then: Callable[[sa.Connection], object] | None = None) -> list[Acceptance]:
        """Accept a batch all-or-nothing at validation; see the module docstring for the contract.

        ``then(conn)`` runs in the transaction that logs the batch (the audit record of a change made
        through the API): if it raises, nothing is accepted and the error propagates.
        """
        prepared, problems = self.prepare(events)
        if problems and all(p.status == 413 for p in problems):
            raise RecordTooLargeError(problems, title="Record too large")
        if problems:
            raise ValidationError(problems, title="Events do not fit the hub's record schemas")
        result = await self.accept_prepared([p for p in prepared if p is not None], refuse_conflicts=True,
                                            then=then)
        refused = [Problem(f"[{i}]", refused_message(a.event_id), status=413)
                   for i, a in enumerate(result) if a.status == "refused"]
        if refused:
            raise RecordTooLargeError(refused, title="Record refused by the broker")
        return result

    async def accept_prepared(self, prepared: Sequence[Prepared], *, refuse_conflicts: bool = False,
                              then: Callable[[sa.Connection], object] | None = None) -> list[Acceptance]:
        """Accept prepared events. A conflict is answered ``conflict`` per event, or, with
        ``refuse_conflicts``, refuses the whole request before anything is logged. ``then(conn)`` runs
        in the transaction that logs them."""
        for attempt in range(3):
            try:
                return await self._accept(prepared, refuse_conflicts, then)
            except sa.exc.IntegrityError:
                if attempt == 2:
                    raise
                log.info("ingest.concurrent_duplicate_retry", attempt=attempt)
        raise AssertionError("unreachable")

    async def _screen(self, prepared: Sequence[Prepared], refuse_conflicts: bool) -> dict[tuple[str, str, int], Status]:
        """Source keys that are not to be logged: ``conflict`` (other content) or ``stale`` (lower version)."""
        known = await asyncio.to_thread(self.store.known_versions, [p.source_key for p in prepared])
        if not known:
            return {}
        verdicts: dict[tuple[str, str, int], Status] = {}
        conflicts: list[Problem] = []
        for i, p in enumerate(prepared):
            versions = known.get(p.source_key[:2])
            if not versions:
                continue
            version = p.source_key[2]
            if version in versions:
                digest = versions[version]
                if digest is not None and digest != p.row["content_digest"]:
                    verdicts[p.source_key] = "conflict"
                    conflicts.append(Problem(f"[{i}]", conflict_message(p.row["event_id"], version), status=409))
            elif version < max(versions):
                verdicts[p.source_key] = "stale"
        if conflicts and refuse_conflicts:
            raise ConflictError(conflicts, title="Content conflicts with an accepted version")
        return verdicts

    async def _accept(self, prepared: Sequence[Prepared], refuse_conflicts: bool = False,
                      then: Callable[[sa.Connection], object] | None = None) -> list[Acceptance]:
        verdicts = await self._screen(prepared, refuse_conflicts)
        fresh: dict[tuple[str, str, int], Prepared] = {}
        for p in prepared:
            if p.source_key not in verdicts:
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
            seqs = [*inserted.values(), *(r.seq for r in stale)]
            refused: dict[int, str] = {}
            if outgoing:
                try:
                    await self.publisher.publish(outgoing)
                except RecordsRefusedError as exc:
                    refused = exc.refused
                    await dead_letter(self.store, self.publisher, [(seqs[i], outgoing[i], why)
                                                                   for i, why in refused.items()])
                await asyncio.to_thread(self.store.mark_published,
                                        [seq for i, seq in enumerate(seqs) if i not in refused])
            refused_keys = {key for i, key in enumerate(inserted) if i in refused}
        finally:
            for key in fresh:
                if in_flight.get(key) is done:
                    del in_flight[key]
            done.set_result(None)
        first = set()
        result = []
        for p in prepared:
            status: Status = verdicts.get(p.source_key) or "duplicate"
            if p.source_key in refused_keys:
                status = "refused"
            elif p.source_key in inserted and p.source_key not in first:
                status = "accepted"
            first.add(p.source_key)
            result.append(Acceptance(p.row["event_id"], p.source_key[2], status, p.row["topic"]))
        log.info("ingest.accepted", accepted=len(inserted), duplicates=len(prepared) - len(inserted))
        return result
