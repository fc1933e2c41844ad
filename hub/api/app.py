"""FastAPI application factory. Services are injected; nothing here opens connections itself."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.telemetry import TelemetryConfig
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import AwareDatetime, BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from connectors.identifiers import IdentifierError, subject_ref
from hub import VERSION
from hub.api.agency_gate import AgencyGate, agencies_router
from hub.api.agency_routes import agency_router
from hub.api.audit_routes import audit_router
from hub.api.coordination_routes import coordination_router
from hub.api.enrolment_routes import enrolment_router
from hub.api.fhir_conformance import (
    FhirFormat,
    capability_statement,
    error_handler,
    http_error_handler,
    validation_handler,
)
from hub.api.governance_routes import governance_router
from hub.api.ingest_answers import FHIR_MEDIA
from hub.api.ingest_routes import ingest_router
from hub.api.limits import EdgeLimits
from hub.api.metrics import IngestTiming, Metrics
from hub.api.openapi import install as install_openapi
from hub.api.problems import problem
from hub.api.refusals import RefusalLog, known_ids, purpose_of, refusal_reason
from hub.api.returns_routes import returns_router
from hub.api.safeguarding_routes import safeguarding_router
from hub.api.sampler import READY_HEARTBEAT, HubWide, MetricsSampler
from hub.api.sharing_routes import sharing_router
from hub.api.summary_routes import summary_router
from hub.api.timeline_routes import timeline_router
from hub.core.errors import AuthError, ForbiddenError, HubError, NotFoundError, Problem, ValidationError
from hub.core.events import InboundEvent, SubjectRef
from hub.core.jobs import Runner
from hub.core.limits import LONG_MAX
from hub.core.logging import get_logger
from hub.family.enrolment import Enrolment
from hub.governance.agencies import AgencyRegistry
from hub.governance.agency_binding import AgencyBinding
from hub.governance.audit import AuditEntry, AuditLog
from hub.governance.audit_seal import reason_subject, seal_text
from hub.governance.auth import (
    INVESTIGATION_HEADER,
    PUBLIC,
    Principal,
    TokenService,
    authorise,
    policy_for,
)
from hub.ingest.relay import RELAY_EVERY, RelayJob
from hub.ingest.services import Services
from hub.kafka.watch import BrokerWatch
from hub.wire.jsonavro import coerce_record

log = get_logger(__name__)


class SubjectIn(BaseModel):
    system: Literal["nhs-number", "upn", "la-person-id", "hub-child-id", "other"]
    value: str = Field(min_length=1, max_length=64)


class EventIn(BaseModel):
    """An event already in the hub's own shape (agency formats go through the connector routes)."""

    record_type: str
    sector: Literal["health", "social_care", "education", "family", "hub"]
    #: one of the agency's registered source systems (the hub records it under the agency's id)
    source_system: str = Field(min_length=1, max_length=120)
    source_id: str = Field(min_length=1, max_length=200)
    source_version: int = Field(default=1, ge=1, le=LONG_MAX)
    occurred_at: AwareDatetime
    subject: SubjectIn
    category: str = "general"
    status: Literal["active", "entered_in_error"] = "active"
    body: dict[str, Any] = Field(default_factory=dict)


class AcceptanceOut(BaseModel):
    event_id: str
    source_version: int
    status: Literal["accepted", "duplicate", "stale"]
    topic: str


def checked_subject(subject: SubjectIn, where: str, problems: list[Problem]) -> SubjectRef:
    """The subject with its identifier checked and normalised as on every ingest route (NHS number
    modulus 11, UPN check letter); a failure names the field and the rule, never the value."""
    if subject.system in ("hub-child-id", "other"):
        return SubjectRef(subject.system, subject.value)
    try:
        return subject_ref(subject.system, subject.value)
    except IdentifierError as exc:
        problems.append(Problem(where, str(exc)))
        return SubjectRef(subject.system, subject.value)


def events_to_inbound(services: Services, items: list[EventIn], binding: AgencyBinding | None = None
                      ) -> list[InboundEvent]:
    """The events as the hub records them from the caller (``binding``); 422 naming every bad field,
    403 (audited) for a hub-internal record type or a source system not the caller's."""
    problems: list[Problem] = []
    out = []
    for i, it in enumerate(items):
        try:
            schema = services.catalogue.writer(it.record_type).schema
        except HubError as exc:
            problems.append(Problem(f"/{i}/record_type", str(exc)))
            continue
        body = coerce_record(schema, it.body, f"/{i}/body", problems, skip=("meta",))
        subject = checked_subject(it.subject, f"/{i}/subject/value", problems)
        out.append(InboundEvent(record_type=it.record_type, sector=it.sector, source_system=it.source_system,
                                source_id=it.source_id, occurred_at=it.occurred_at, subject=subject, body=body,
                                source_version=it.source_version, category=it.category, status=it.status))
    if problems:
        raise ValidationError(problems)
    return out if binding is None else [binding.bind(e, named_system=True) for e in out]


#: FastAPI's own OpenTelemetry instrumentation: a server span per request (continuing a caller's
#: ``traceparent``), named by the route template, with dependency and endpoint spans inside; the hub's
#: tracer provider scrubs identifiers from its ``url.*`` attributes (hub/core/tracing.py). Metrics stay
#: Prometheus (hub/api/metrics.py); its log records (validation failures with their input) are off; the
#: probes are not traced.
TELEMETRY: TelemetryConfig = {"tracing": True, "metrics": False, "logs": False, "operation_spans": True,
                              "exclude": lambda scope: scope.get("path") in ("/healthz", "/readyz", "/metrics")}


def create_app(services: Services, *, relay_interval: float = RELAY_EVERY) -> FastAPI:
    metrics = Metrics()
    store = services.store
    audit = AuditLog(store)
    hub_wide = HubWide()
    metrics.registry.register(hub_wide)
    sampler = MetricsSampler(services, audit, metrics, hub_wide, services.settings.metrics_interval)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await services.start()
        jobs = Runner([RelayJob(store, services.publisher, relay_interval),  # the API process relays the outbox
                       BrokerWatch(services.settings, services.publisher),  # and watches the broker (/readyz)
                       sampler])  # and, one replica at a time, samples the hub-wide metrics
        task = asyncio.create_task(jobs.run())
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await services.stop()

    tokens = TokenService(services.settings)
    enrolment = Enrolment(store, services.ingest, services.vault)

    async def on_caseload(coordinator: str, household: str) -> bool:
        return household in await asyncio.to_thread(enrolment.caseload, coordinator)

    registry = AgencyRegistry.from_settings(services.settings)
    gate = AgencyGate(registry, audit)
    refusals = RefusalLog()

    def trace(action: str, principal: Principal, request: Request, template: str, detail: dict[str, Any]) -> None:
        """One audit record of an authenticated call: hub ids that exist, the route template, a sealed reason."""
        params = request.path_params
        household, child = known_ids(store, params.get("household_id"), params.get("child_id"))
        if principal.reason:
            detail = {**detail, "reason": seal_text(services.vault, reason_subject(household, principal.subject),
                                                    principal.reason)}
        audit.record_many([AuditEntry(
            action, actor=principal.subject, actor_role=principal.role, subject_household=household,
            subject_child=child, data_ref=f"{request.method} {template}", purpose=purpose_of(request, principal),
            detail=detail, source=request.client.host if request.client else None)])

    async def guard(request: Request) -> None:
        """Authenticate the bearer token, apply the route's policy (hub/governance/auth.py POLICY), audit the access."""
        header = request.headers.get("authorization", "")
        route = request.scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        policy = policy_for(request.method, template)
        if policy is PUBLIC:
            return  # the health probes take no token: an orchestrator's stale one must not fail them
        if policy is not None and policy.page:
            return  # a page signs its reader in by session cookie and applies the same rules (hub/pages)
        principal = None
        try:
            if header.lower().startswith("bearer "):
                bearer = header[7:].strip()
                principal = tokens.scraper(bearer) if template == "/metrics" else None
                # an OIDC check may fetch the issuer's key set: keep that off the event loop
                if principal is None:
                    principal = (await asyncio.to_thread(tokens.verify, bearer) if tokens.uses_oidc
                                 else tokens.verify(bearer))
                reason = request.headers.get(INVESTIGATION_HEADER)
                if reason and principal.role == "ig_officer":
                    principal = dataclasses.replace(principal, reason=reason[:500])
            rule = await authorise(principal, request.method, template, dict(request.path_params), on_caseload)
        except (AuthError, ForbiddenError, NotFoundError) as exc:
            why = refusal_reason(exc, principal, header)
            metrics.refused.labels(why).inc()
            refusals.warn(why, request.client.host if request.client else "unknown", request.method, template)
            if principal is not None:  # who was refused is IG's business; an anonymous knock is not
                await asyncio.to_thread(trace, "login_denied", principal, request, template,
                                        {"refused": type(exc).__name__})
            raise
        request.state.principal = principal
        if rule.audit and principal is not None:
            await asyncio.to_thread(trace, rule.audit, principal, request, template, {})

    docs = services.settings.api_docs_open
    app = FastAPI(title="Family integration hub", version=VERSION, lifespan=lifespan,
                  dependencies=[Depends(guard)], docs_url="/docs" if docs else None,
                  redoc_url="/redoc" if docs else None, openapi_url="/openapi.json" if docs else None,
                  description="Agency events in; consent-gated family timelines out.", telemetry=TELEMETRY)
    install_openapi(app)
    app.add_middleware(EdgeLimits, max_bytes=services.settings.max_body_bytes)
    app.add_middleware(IngestTiming, metrics=metrics)
    app.state.metrics, app.state.metrics_sampler = metrics, sampler
    app.add_middleware(FhirFormat)  # outside the limits, so their refusals are written as asked too
    app.add_exception_handler(HubError, error_handler)
    app.add_exception_handler(RequestValidationError, validation_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)

    @app.get("/fhir/metadata", tags=["fhir"])
    async def fhir_metadata(request: Request) -> JSONResponse:
        """The server's CapabilityStatement: FHIR R4, JSON and XML, the resource types ``/fhir`` records."""
        return JSONResponse(capability_statement(app, str(request.base_url) + "fhir"), media_type=FHIR_MEDIA)

    @app.get("/healthz", tags=["probes"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["probes"])
    async def readyz() -> Response:
        """Ready to take requests: the database answers and the broker acknowledges. Not the stream
        workers: an accepted event waits in Kafka for them, so agency ingest stays in service while
        they restart (their readiness is their own probe's; `hub_workers_ready` counts them)."""
        reasons = []
        try:
            workers = await asyncio.to_thread(store.workers)
        except Exception as exc:
            return problem(503, "not-ready", "Not ready", f"database: {type(exc).__name__}")
        now = datetime.now(UTC)
        fresh = [w for w in workers if w["state"] == "ready" and now - w["heartbeat_at"] < READY_HEARTBEAT]
        if not services.started:
            reasons.append("not connected to Kafka")
        elif services.publisher.unreachable:
            reasons.append(services.publisher.unreachable)
        if reasons:
            return problem(503, "not-ready", "Not ready", "; ".join(reasons))
        return Response(json.dumps({"status": "ready", "workers_ready": len(fresh)}), media_type="application/json")

    @app.get("/metrics", tags=["probes"])
    async def prometheus() -> Response:
        """Prometheus text format: formats what is in memory (the hub-wide part is sampled in the background)."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/events", tags=["ingest"], response_model=list[AcceptanceOut])
    async def ingest_events(request: Request, items: list[EventIn]) -> list[AcceptanceOut]:
        """Accept events in the hub's own shape, as the calling agency's (its registered source systems
        only; hub-internal record types refused). Safe to retry: a resend returns the same event ids."""
        binding = await asyncio.to_thread(gate.binding, request, "/v1/events")
        try:
            inbound = await asyncio.to_thread(events_to_inbound, services, items, binding)
            acceptances = await services.ingest.accept(inbound)
        except ValidationError:  # also too large (413) and conflicting (409)
            metrics.rejected.inc()
            raise
        for a in acceptances:
            if a.status == "accepted":
                metrics.accepted.labels(a.topic).inc()
            else:
                metrics.duplicates.inc()
        return [AcceptanceOut(**a.__dict__) for a in acceptances]

    app.include_router(ingest_router(services, gate, metrics))
    app.include_router(agencies_router(registry))
    app.include_router(timeline_router(services))
    app.include_router(enrolment_router(services))
    app.include_router(sharing_router(services))
    app.include_router(agency_router(services))
    app.include_router(audit_router(services))
    app.include_router(governance_router(services))
    app.include_router(returns_router(services, registry))
    app.include_router(safeguarding_router(services))
    app.include_router(coordination_router(services))
    app.include_router(summary_router(services))
    return app
