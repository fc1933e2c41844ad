"""Agency-format ingest routes: the connectors behind HTTP.

* ``POST /v1/ingest/health`` (FHIR JSON, XML, NDJSON), ``POST /v1/ingest/social-care`` and
  ``POST /v1/ingest/education`` (JSON object or array, NDJSON, CSV) answer a JSON summary
  (200 all rows good, 207 some rows refused and the good ones accepted, 422 nothing acceptable) or an
  RFC 9457 problem document (400 unreadable payload, 413 too large, 415 wrong content type,
  503 broker or database unavailable, with Retry-After). Each route reads its payload with its
  sector's reader from the sector registry (:mod:`connectors.sectors`).
* ``POST /fhir/{type}`` (one resource) and ``POST /fhir`` (a Bundle) speak FHIR: OperationOutcome
  for errors, a ``transaction-response`` / ``batch-response`` Bundle (or 201/200 with a Location)
  for success.

Every route is bound to the calling agency (:mod:`hub.api.agency_gate`): its registration decides the
source system events are recorded under, the mapping they are read with and the organisations they
may name; a payload claiming another agency's identity, or a hub-internal record type, is a 403.
FHIR context resources (Patient, Practitioner, Organization…) are remembered per registered agency in
:mod:`hub.ingest.references`, so a later request's ``Patient/{id}`` resolves as it would on a FHIR
server, never to another agency's Patient.

Every route is safe to retry: the hub deduplicates on (source system, source id, version), so a
resend answers ``duplicate`` with the same event ids; the same version with other content is 409
(naming the event id), a lower version than one accepted is answered ``stale``. ``Idempotency-Key``
is only logged, as a short SHA-256 of it (a sender may put anything in it).
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from fastapi import APIRouter, Request, Response

from connectors import health
from connectors.formats import media_type
from connectors.health import fhir
from connectors.sectors import Read, SectorReader, reader
from hub.api.agency_gate import AgencyGate
from hub.api.fhir_r4 import not_r4
from hub.api.ingest_answers import (
    error_outcome,
    fhir_response,
    mismatch_outcome,
    operation_outcome,
    resource_type,
    summary_response,
    too_large,
    unreadable,
    unreadable_outcome,
    unsupported,
)
from hub.api.metrics import Metrics
from hub.core.errors import HubError, ValidationError, issue
from hub.core.logging import get_logger
from hub.governance.agency_binding import AgencyBinding
from hub.ingest.batch import PreparedBatch, Summary, accept_batch, prepare_batch
from hub.ingest.references import SqlReferenceDirectory
from hub.ingest.service import IngestService
from hub.ingest.services import Services

log = get_logger(__name__)

FHIR_TYPES = (
    "application/fhir+json",
    "application/json",
    "application/fhir+xml",
    "application/xml",
    "text/xml",
)


def _v1_responses(refused: str) -> dict[int | str, dict[str, Any]]:
    return {207: {"description": f"Some {refused} refused"}, 422: {"description": "None accepted"}}


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes even without a Content-Length."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _media(request: Request) -> str:
    return media_type(request.headers.get("content-type"))


def _body_doc(content_types: tuple[str, ...]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {t: {"schema": {}} for t in content_types}}}


def read_payload(ingest: IngestService, sector: SectorReader, body: bytes, media: str,
                 binding: AgencyBinding | None = None,
                 directory: SqlReferenceDirectory | None = None) -> PreparedBatch:
    """Read a payload with the agency's mapping for the sector (default: the sector's) and prepare its
    events as the agency's (CPU, and the audit record of a refusal); FHIR references resolve in the
    agency's remembered resources (``directory``)."""
    if binding is None:
        read = sector.read(body, media, None, directory)
        return prepare_batch(ingest, read.results, atomic=read.atomic, directory=directory)
    mapping = binding.registration.mappings.get(sector.name)
    if sector.name == health.SECTOR:
        decoded = fhir.decode(body, media)
        binding.check_sources(e.resource for e in decoded.entries)
        read = Read(health.results(decoded, mapping, directory=directory), decoded.atomic)
    else:
        read = sector.read(body, media, mapping, directory)
    return prepare_batch(ingest, binding.bind_results(read.results), atomic=read.atomic, directory=directory)


def fhir_refusal(media: str, expected: str | None) -> Response | None:
    """415 for a content type /fhir does not take, 404 for /fhir/{type} naming no FHIR R4 resource type."""
    if media not in FHIR_TYPES:
        message = f"content type {media or '(none)'} is not accepted; send {', '.join(FHIR_TYPES)}"
        return operation_outcome(415, [issue("not-supported", message)])
    if expected is not None and expected != "Bundle":
        refused = not_r4(expected)
        if refused is None and fhir.model_class(expected) is None:
            refused = f"resource type '{expected}' is not supported by this server"
        if refused is not None:
            return operation_outcome(404, [issue("not-supported", refused, "resourceType")])
    return None


def r4_refusal(decoded: fhir.Decoded) -> Response | None:
    """422 when a payload holds a resource of a type FHIR R4 does not have (an R4B-only one)."""
    issues = []
    for e in decoded.entries:
        refused = not_r4(resource_type(e))
        if refused is not None:
            where = "resourceType" if e.row is None else f"Bundle.entry[{e.row}].resource"
            issues.append(issue("not-supported", refused, where))
    return operation_outcome(422, issues) if issues else None


def key_digest(key: str | None) -> str | None:
    """What the logs say of an ``Idempotency-Key``: the first 16 hex digits of its SHA-256, never the key."""
    return hashlib.sha256(key.encode()).hexdigest()[:16] if key else None


class IngestMeter:
    """Counts what the ingest routes accepted and refused, and logs each batch (never its content)."""

    def __init__(self, metrics: Metrics | None) -> None:
        self.metrics = metrics

    def count(self, summary: Summary | None, refused: int = 0) -> None:
        if self.metrics is None:
            return
        if summary is not None:
            for r in summary.results:
                if r.status == "accepted":
                    self.metrics.accepted.labels(r.topic).inc()
                else:
                    self.metrics.duplicates.inc()
            refused += summary.rejected
        if refused:
            self.metrics.rejected.inc(refused)

    def trace(self, request: Request, route: str, status: int, summary: Summary | None = None) -> None:
        fields: dict[str, Any] = {
            "route": route,
            "status": status,
            "idempotency_key": key_digest(request.headers.get("idempotency-key")),
        }
        if summary is not None:
            fields.update(accepted=summary.accepted, duplicates=summary.duplicates, rejected=summary.rejected)
        log.info("ingest.batch", **fields)

    def refused(self, request: Request | None, route: str, status: int) -> None:
        self.count(None, 1)
        if request is not None:
            self.trace(request, route, status)


def ingest_router(services: Services, gate: AgencyGate, metrics: Metrics | None = None) -> APIRouter:
    """Routes for agency payloads, publishing through ``services.ingest``, bound by ``gate``."""
    router = APIRouter(tags=["ingest"])
    limit = services.settings.max_body_bytes
    ingest = services.ingest
    meter = IngestMeter(metrics)

    def directory(agency: str) -> SqlReferenceDirectory:
        """The registered agency's remembered FHIR resources."""
        return SqlReferenceDirectory(services.store, services.pseudonymise, agency)

    async def v1(request: Request, sector: SectorReader) -> Response:
        route = f"/v1/ingest/{sector.label}"
        media = _media(request)
        if not sector.accepts(media):
            meter.refused(request, route, 415)
            return unsupported(sector.media_types, media)
        try:
            body = await read_body(request, limit)
        except BodyTooLarge:
            meter.refused(request, route, 413)
            return too_large(limit)
        binding = await asyncio.to_thread(gate.binding, request, route, sector.name)  # 403 if not registered
        try:
            batch = await asyncio.to_thread(read_payload, ingest, sector, body, media, binding,
                                            directory(binding.registration.agency_id))
        except ValidationError as exc:
            meter.refused(request, route, 400)
            return unreadable(exc)
        summary = await accept_batch(ingest, batch)  # BrokerError / StoreError -> 503 + Retry-After
        meter.count(summary)
        meter.trace(request, route, summary.status_code, summary)
        return summary_response(summary)

    health_reader, social_care_reader, education_reader = (reader(s) for s in ("health", "social_care", "education"))

    @router.post(
        "/v1/ingest/health",
        openapi_extra=_body_doc(health_reader.media_types),
        status_code=200,
        responses=_v1_responses("entries"),
    )
    async def ingest_health(request: Request) -> Response:
        """FHIR R4 / UK Core: a resource, a Bundle (transaction all-or-nothing) or NDJSON (line numbers)."""
        return await v1(request, health_reader)

    @router.post(
        "/v1/ingest/social-care",
        openapi_extra=_body_doc(social_care_reader.media_types),
        status_code=200,
        responses=_v1_responses("rows"),
    )
    async def ingest_social_care(request: Request) -> Response:
        """Local-authority events: a JSON object (all-or-nothing), a JSON array, NDJSON or CSV."""
        return await v1(request, social_care_reader)

    @router.post(
        "/v1/ingest/education",
        openapi_extra=_body_doc(education_reader.media_types),
        status_code=200,
        responses=_v1_responses("rows"),
    )
    async def ingest_education(request: Request) -> Response:
        """School MIS / SEND events: a JSON object (all-or-nothing), a JSON array, NDJSON or CSV."""
        return await v1(request, education_reader)

    async def fhir_post(request: Request, route: str, expected: str | None) -> Response:
        """``expected``: the resource type of /fhir/{type}; None for /fhir (a Bundle)."""
        media = _media(request)
        refusal = fhir_refusal(media, expected)
        if refusal is not None:
            meter.refused(None, route, refusal.status_code)
            return refusal
        try:
            body = await read_body(request, limit)
        except BodyTooLarge:
            meter.refused(None, route, 413)
            message = f"the request body is larger than {limit} bytes; split the batch"
            return operation_outcome(413, [issue("too-costly", message)])
        try:
            decoded = await asyncio.to_thread(fhir.decode, body, media)
        except ValidationError as exc:
            meter.refused(None, route, 400)
            return unreadable_outcome(exc)
        mismatch = mismatch_outcome(decoded, route, expected) or r4_refusal(decoded)
        if mismatch is not None:
            meter.refused(None, route, 400)
            return mismatch
        try:
            binding = await asyncio.to_thread(gate.binding, request, route, health.SECTOR)
            await asyncio.to_thread(binding.check_sources, (e.resource for e in decoded.entries))
            agency = directory(binding.registration.agency_id)
            results = binding.bind_results(health.results(
                decoded, binding.registration.mappings.get(health.SECTOR), directory=agency))
            batch = await asyncio.to_thread(prepare_batch, ingest, results, atomic=decoded.atomic, directory=agency)
            summary = await accept_batch(ingest, batch)
        except HubError as exc:
            return error_outcome(exc)
        meter.count(summary)
        meter.trace(request, route, summary.status_code, summary)
        return fhir_response(decoded, summary, str(request.base_url) + "fhir")

    @router.post("/fhir", openapi_extra=_body_doc(FHIR_TYPES), tags=["fhir"])
    async def fhir_bundle(request: Request) -> Response:
        """A FHIR Bundle: ``transaction`` all-or-nothing; ``batch``/``collection``/``message`` per entry."""
        return await fhir_post(request, "/fhir", None)

    @router.post("/fhir/{resource_type}", openapi_extra=_body_doc(FHIR_TYPES), tags=["fhir"])
    async def fhir_resource(resource_type: str, request: Request) -> Response:
        """One FHIR resource of ``resource_type`` (201 Created, or 200 OK for a resend)."""
        return await fhir_post(request, f"/fhir/{resource_type}", resource_type)

    return router
