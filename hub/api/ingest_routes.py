"""Agency-format ingest routes: the connectors behind HTTP.

* ``POST /v1/ingest/health`` (FHIR JSON, XML, NDJSON), ``POST /v1/ingest/social-care`` and
  ``POST /v1/ingest/education`` (JSON object or array, NDJSON, CSV) answer a JSON summary
  (200 all rows good, 207 some rows refused and the good ones accepted, 422 nothing acceptable) or an
  RFC 9457 problem document (400 unreadable payload, 413 too large, 415 wrong content type,
  503 broker or database unavailable, with Retry-After).
* ``POST /fhir/{type}`` (one resource) and ``POST /fhir`` (a Bundle) speak FHIR: OperationOutcome
  for errors, a ``transaction-response`` / ``batch-response`` Bundle (or 201/200 with a Location)
  for success.

Every route is safe to retry: the hub deduplicates on (source system, source id, version), so a
resend answers ``duplicate`` with the same event ids. ``Idempotency-Key`` is only logged.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from hub.api.problems import BASE, PROBLEM_JSON, problem
from hub.core.errors import BrokerError, HubError, StoreError, ValidationError
from hub.core.logging import get_logger
from hub.ingest.batch import PreparedBatch, Summary, accept_batch, prepare_batch
from hub.ingest.services import Services

if TYPE_CHECKING:
    from hub.api.app import Metrics

log = get_logger(__name__)
FHIR_MEDIA = "application/fhir+json"

HEALTH_TYPES = (
    "application/fhir+json",
    "application/json",
    "application/fhir+xml",
    "application/xml",
    "text/xml",
    "application/fhir+ndjson",
    "application/x-ndjson",
    "application/ndjson",
)
FHIR_TYPES = (
    "application/fhir+json",
    "application/json",
    "application/fhir+xml",
    "application/xml",
    "text/xml",
)
RECORD_TYPES = (
    "application/json",
    "text/csv",
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
)


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
    from connectors.formats import media_type

    return media_type(request.headers.get("content-type"))


def _body_doc(content_types: tuple[str, ...]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {t: {"schema": {}} for t in content_types}}}


# --- RFC 9457 answers -------------------------------------------------------------------------


def _row_errors(summary: Summary) -> list[dict[str, Any]]:
    return [{"row": p.row, "pointer": p.location, "detail": p.detail} for p in summary.problems]


def summary_response(summary: Summary) -> JSONResponse:
    status = summary.status_code
    if status != 422:
        return JSONResponse(summary.as_json(), status_code=status)
    body: dict[str, Any] = {
        "type": BASE + "validation",
        "title": "No row of the batch was accepted",
        "status": 422,
        "detail": f"{summary.rejected} row(s) refused; nothing was accepted",
        "errors": _row_errors(summary),
        **summary.as_json(),
    }
    return JSONResponse(body, status_code=422, media_type=PROBLEM_JSON)


def unsupported(accepted: tuple[str, ...], media: str) -> JSONResponse:
    return problem(
        415,
        "unsupported-media-type",
        "Unsupported content type",
        f"content type {media or '(none)'} is not accepted; send {', '.join(accepted)}",
        headers={"Accept-Post": ", ".join(accepted)},
    )


def unreadable(exc: ValidationError) -> JSONResponse:
    return problem(
        400,
        "malformed",
        exc.title,
        f"{len(exc.problems)} problem(s) with the payload",
        [{"pointer": p.location, "detail": p.message} for p in exc.problems],
    )


def too_large(limit: int) -> JSONResponse:
    return problem(413, "too-large", "Request body too large", f"the limit is {limit} bytes; split the batch")


# --- FHIR answers -----------------------------------------------------------------------------


def issue(code: str, diagnostics: str, expression: str = "", severity: str = "error") -> dict[str, Any]:
    out: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        out["expression"] = [expression]
    return out


def _issue_code(detail: str) -> str:
    if "is not a FHIR R4 resource" in detail or "is not mapped" in detail:
        return "not-supported"
    return "invalid"


def operation_outcome(
    status: int,
    issues: list[dict[str, Any]],
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        {"resourceType": "OperationOutcome", "issue": issues},
        status_code=status,
        media_type=FHIR_MEDIA,
        headers=headers,
    )


def outcome_of(summary: Summary) -> list[dict[str, Any]]:
    return [
        issue(_issue_code(p.detail), p.detail if p.row is None else f"entry {p.row}: {p.detail}", p.location)
        for p in summary.problems
    ]


def _status_line(status: str) -> str:
    return "201 Created" if status == "accepted" else "200 OK"


# --- the router -------------------------------------------------------------------------------


def ingest_router(services: Services, metrics: Metrics | None = None) -> APIRouter:
    """Routes for agency payloads, publishing through ``services.ingest``."""
    from connectors import education, health, social_care
    from connectors.health import fhir

    router = APIRouter(tags=["ingest"])
    limit = services.settings.max_body_bytes
    ingest = services.ingest

    def count(summary: Summary | None, refused: int = 0) -> None:
        if metrics is None:
            return
        if summary is not None:
            for r in summary.results:
                if r.status == "accepted":
                    metrics.accepted.labels(r.topic).inc()
                else:
                    metrics.duplicates.inc()
            refused += summary.rejected
        if refused:
            metrics.rejected.inc(refused)

    def trace(request: Request, route: str, status: int, summary: Summary | None = None) -> None:
        fields: dict[str, Any] = {
            "route": route,
            "status": status,
            "idempotency_key": (request.headers.get("idempotency-key") or "")[:200] or None,
        }
        if summary is not None:
            fields.update(accepted=summary.accepted, duplicates=summary.duplicates, rejected=summary.rejected)
        log.info("ingest.batch", **fields)

    # --- /v1/ingest/* ------------------------------------------------------------------------

    def parse_health(body: bytes, content_type: str) -> PreparedBatch:
        decoded = fhir.decode(body, content_type)
        return prepare_batch(ingest, health.results(decoded), atomic=decoded.atomic)

    def parse_records(sector: str, body: bytes, content_type: str) -> PreparedBatch:
        module = social_care if sector == "social_care" else education
        return prepare_batch(ingest, module.iter_payload(body, content_type))

    async def v1(request: Request, route: str, accepted: tuple[str, ...], sector: str) -> Response:
        media = _media(request)
        if media not in accepted:
            count(None, 1)
            trace(request, route, 415)
            return unsupported(accepted, media)
        try:
            body = await read_body(request, limit)
        except BodyTooLarge:
            count(None, 1)
            trace(request, route, 413)
            return too_large(limit)
        try:
            if sector == "health":
                batch = await asyncio.to_thread(parse_health, body, media)
            else:
                batch = await asyncio.to_thread(parse_records, sector, body, media)
        except ValidationError as exc:
            count(None, 1)
            trace(request, route, 400)
            return unreadable(exc)
        summary = await accept_batch(ingest, batch)  # BrokerError / StoreError -> 503 + Retry-After
        count(summary)
        trace(request, route, summary.status_code, summary)
        return summary_response(summary)

    @router.post(
        "/v1/ingest/health",
        openapi_extra=_body_doc(HEALTH_TYPES),
        status_code=200,
        responses={207: {"description": "Some entries refused"}, 422: {"description": "None accepted"}},
    )
    async def ingest_health(request: Request) -> Response:
        """FHIR R4 / UK Core: a resource, a Bundle (transaction all-or-nothing) or NDJSON (line numbers)."""
        return await v1(request, "/v1/ingest/health", HEALTH_TYPES, "health")

    @router.post(
        "/v1/ingest/social-care",
        openapi_extra=_body_doc(RECORD_TYPES),
        status_code=200,
        responses={207: {"description": "Some rows refused"}, 422: {"description": "None accepted"}},
    )
    async def ingest_social_care(request: Request) -> Response:
        """Local-authority events: a JSON object (all-or-nothing), a JSON array, NDJSON or CSV."""
        return await v1(request, "/v1/ingest/social-care", RECORD_TYPES, "social_care")

    @router.post(
        "/v1/ingest/education",
        openapi_extra=_body_doc(RECORD_TYPES),
        status_code=200,
        responses={207: {"description": "Some rows refused"}, 422: {"description": "None accepted"}},
    )
    async def ingest_education(request: Request) -> Response:
        """School MIS / SEND events: a JSON object (all-or-nothing), a JSON array, NDJSON or CSV."""
        return await v1(request, "/v1/ingest/education", RECORD_TYPES, "education")

    # --- /fhir -------------------------------------------------------------------------------

    async def fhir_post(request: Request, route: str, expected: str | None) -> Response:
        """``expected``: the resource type of /fhir/{type}; None for /fhir (a Bundle)."""
        media = _media(request)
        if media not in FHIR_TYPES:
            count(None, 1)
            return operation_outcome(
                415,
                [
                    issue(
                        "not-supported",
                        f"content type {media or '(none)'} is not accepted; send {', '.join(FHIR_TYPES)}",
                    )
                ],
            )
        if expected is not None and expected != "Bundle" and fhir._model(expected) is None:
            count(None, 1)
            return operation_outcome(
                404,
                [
                    issue(
                        "not-supported",
                        f"resource type '{expected}' is not a FHIR R4 resource type",
                        "resourceType",
                    )
                ],
            )
        try:
            body = await read_body(request, limit)
        except BodyTooLarge:
            count(None, 1)
            return operation_outcome(
                413, [issue("too-costly", f"the request body is larger than {limit} bytes; split the batch")]
            )
        try:
            decoded = await asyncio.to_thread(fhir.decode, body, media)
        except ValidationError as exc:
            count(None, 1)
            code = "structure" if exc.title.startswith("Malformed") else "invalid"
            return operation_outcome(400, [issue(code, p.message, p.location) for p in exc.problems])
        actual = (
            "Bundle"
            if decoded.bundle_type is not None
            else (decoded.entries[0].root if decoded.entries else "Resource")
        )
        want = expected or "Bundle"
        if actual != want:
            count(None, 1)
            hint = "" if expected else "; POST a single resource to /fhir/{type}"
            return operation_outcome(
                400,
                [
                    issue(
                        "invalid",
                        f"resourceType '{actual}' does not match the "
                        f"endpoint {route} (expected '{want}'){hint}",
                        "resourceType",
                    )
                ],
            )
        try:
            batch = await asyncio.to_thread(
                lambda: prepare_batch(ingest, health.results(decoded), atomic=decoded.atomic)
            )
            summary = await accept_batch(ingest, batch)
        except (BrokerError, StoreError) as exc:
            return operation_outcome(
                503, [issue("transient", f"{exc}; retry with the same request")], headers={"Retry-After": "2"}
            )
        except HubError as exc:
            return operation_outcome(500, [issue("exception", type(exc).__name__)])
        count(summary)
        trace(request, route, summary.status_code, summary)
        if summary.rejected and (decoded.atomic or not summary.results):
            return operation_outcome(422, outcome_of(summary))
        if decoded.bundle_type is None:  # a single resource
            if not summary.results:
                return operation_outcome(
                    200,
                    [
                        issue(
                            "informational",
                            "context-only resource: checked, nothing recorded",
                            severity="information",
                        )
                    ],
                )
            r = summary.results[0]
            return operation_outcome(
                201 if r.status == "accepted" else 200,
                [
                    issue(
                        "informational",
                        f"{r.status}: Event/{r.event_id} version {r.source_version}",
                        severity="information",
                    )
                ],
                headers={"Location": f"Event/{r.event_id}", "ETag": f'W/"{r.source_version}"'},
            )
        by_row = {r.row: r for r in summary.results}
        errors: dict[int | None, list[dict[str, Any]]] = {}
        for p in summary.problems:
            errors.setdefault(p.row, []).append(issue(_issue_code(p.detail), p.detail, p.location))
        entries = []
        for e in decoded.entries:
            if e.row in by_row:
                r = by_row[e.row]
                response: dict[str, Any] = {
                    "status": _status_line(r.status),
                    "location": f"Event/{r.event_id}",
                    "etag": f'W/"{r.source_version}"',
                }
            elif e.row in errors:
                response = {
                    "status": "422 Unprocessable Entity",
                    "outcome": {"resourceType": "OperationOutcome", "issue": errors[e.row]},
                }
            else:
                response = {"status": "200 OK"}
            entries.append({"response": response})
        kind = "transaction-response" if decoded.bundle_type == "transaction" else "batch-response"
        return JSONResponse({"resourceType": "Bundle", "type": kind, "entry": entries}, media_type=FHIR_MEDIA)

    @router.post("/fhir", openapi_extra=_body_doc(FHIR_TYPES), tags=["fhir"])
    async def fhir_bundle(request: Request) -> Response:
        """A FHIR Bundle: ``transaction`` all-or-nothing; ``batch``/``collection``/``message`` per entry."""
        return await fhir_post(request, "/fhir", None)

    @router.post("/fhir/{resource_type}", openapi_extra=_body_doc(FHIR_TYPES), tags=["fhir"])
    async def fhir_resource(resource_type: str, request: Request) -> Response:
        """One FHIR resource of ``resource_type`` (201 Created, or 200 OK for a resend)."""
        return await fhir_post(request, f"/fhir/{resource_type}", resource_type)

    return router
