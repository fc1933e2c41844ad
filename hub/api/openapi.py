"""The OpenAPI document as clients need it: how to authenticate, what every answer looks like.

FastAPI derives operations and JSON bodies from the routes. This adds what it cannot see:

* the ``bearerAuth`` security scheme (HTTP bearer, a JWT: the hub's own or its OIDC issuer's), required on
  every operation the policy table (:data:`hub.governance.auth.POLICY`) does not make public; ``/metrics``
  also takes the scraper's static credential, which is a bearer token too;
* the problem responses (RFC 9457, ``application/problem+json``) the hub answers with: 401 and 403 on
  protected operations, 404 where a path names a record, 413 and 503 on ingest, and the 422 of a bad
  request (FastAPI's default documents a body the hub never sends);
* the bodies of answers that are not a route's return value: Prometheus text, Server-Sent Events, CSV,
  the batch summaries of the ingest routes, and FHIR resources.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from hub.api.problems import PROBLEM_JSON
from hub.governance.auth import PUBLIC, policy_for

BEARER = "bearerAuth"


class ProblemEntry(BaseModel):
    pointer: str = Field(description="JSON Pointer (or row location) of what is wrong")
    detail: str
    row: int | None = Field(default=None, description="Row or entry number, in batch answers")


class ProblemDocument(BaseModel):
    """An RFC 9457 problem document."""

    type: str
    title: str
    status: int
    detail: str | None = None
    errors: list[ProblemEntry] | None = None


class RowResult(BaseModel):
    row: int | None
    event_id: str
    status: str = Field(description="accepted, duplicate or stale")
    topic: str
    version: int
    file: str | None = None


class RowProblem(BaseModel):
    row: int | None
    location: str
    detail: str
    file: str | None = None


class BatchSummary(BaseModel):
    """What an ingest route answers: every row accepted or why not (207 when some were refused)."""

    accepted: int
    duplicates: int
    rejected: int
    ignored: int
    results: list[RowResult]
    problems: list[RowProblem]


class Readiness(BaseModel):
    status: str = Field(description="ready")
    workers_ready: int = Field(description="Stream workers with a fresh heartbeat (not part of readiness)")


FHIR_RESOURCE: dict[str, Any] = {
    "type": "object", "required": ["resourceType"],
    "properties": {"resourceType": {"type": "string"}},
    "description": "A FHIR R4 resource (an OperationOutcome, or a Bundle answering a Bundle)",
}
TEXT: dict[str, Any] = {"type": "string"}
#: the 2xx bodies of routes whose answer is not a return value, by path
BODIES: dict[str, dict[str, dict[str, Any]]] = {
    "/metrics": {"text/plain; version=0.0.4": TEXT},
    "/v1/audit/export": {"text/csv": TEXT},
    "/v1/households/{household_id}/stream": {"text/event-stream": TEXT},
    "/v1/coordinators/{coordinator_id}/stream": {"text/event-stream": TEXT},
    "/fhir": {"application/fhir+json": FHIR_RESOURCE, "application/fhir+xml": TEXT},
    "/fhir/metadata": {"application/fhir+json": FHIR_RESOURCE, "application/fhir+xml": TEXT},
    "/fhir/{resource_type}": {"application/fhir+json": FHIR_RESOURCE, "application/fhir+xml": TEXT},
}
SUMMARY_PATHS = ("/v1/ingest/",)
INGEST_PATHS = ("/v1/events", "/v1/ingest/", "/fhir")
PROBLEMS = {
    401: "No valid bearer token",
    403: "The caller's role or relationship does not allow this",
    404: "No such record, or not one the caller may see",
    413: "The body or a record is over the size limit; nothing was logged",
    422: "The request is invalid; nothing was accepted",
    503: "The broker is unreachable; retry after Retry-After",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error_body(path: str) -> dict[str, Any]:
    """FHIR routes answer errors as an OperationOutcome; every other route with a problem document."""
    if path.startswith("/fhir"):
        return {"application/fhir+json": {"schema": FHIR_RESOURCE}}
    return {PROBLEM_JSON: {"schema": _ref("ProblemDocument")}}


def _untyped(response: dict[str, Any]) -> bool:
    return all(not body.get("schema") for body in (response.get("content") or {}).values())


def _problem(status: int, path: str) -> dict[str, Any]:
    return {"description": PROBLEMS[status], "content": _error_body(path)}


def describe(doc: dict[str, Any]) -> dict[str, Any]:
    """Add the security scheme, the problem responses and the untyped bodies to a generated document."""
    components = doc.setdefault("components", {})
    components.setdefault("securitySchemes", {})[BEARER] = {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "A JWT: the hub's own (`hub token create`) or, in production, the OIDC issuer's. "
                       "GET /metrics also accepts the scraper's static HUB_METRICS_TOKEN."}
    schemas = components.setdefault("schemas", {})
    for model in (ProblemEntry, ProblemDocument, RowResult, RowProblem, BatchSummary, Readiness):
        schemas[model.__name__] = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for path, operations in doc.get("paths", {}).items():
        for method, op in operations.items():
            responses = op.setdefault("responses", {})
            for code, response in list(responses.items()):
                if code.startswith("2") and _untyped(response):
                    if path.startswith(SUMMARY_PATHS):
                        response["content"] = {"application/json": {"schema": _ref("BatchSummary")}}
                    elif path == "/readyz":
                        response["content"] = {"application/json": {"schema": _ref("Readiness")}}
                        responses.setdefault("503", {"description": "Not ready: the database or the broker",
                                                     "content": {PROBLEM_JSON: {"schema": _ref("ProblemDocument")}}})
                    elif path in BODIES:
                        response["content"] = {mt: {"schema": s} for mt, s in BODIES[path].items()}
            if "422" in responses or method in ("post", "put", "patch"):
                said = responses.get("422", {}).get("description", "Validation Error")
                responses["422"] = _problem(422, path)
                if said != "Validation Error":  # FastAPI's default; a route's own words are kept
                    responses["422"]["description"] = said
            if policy_for(method.upper(), path) is not PUBLIC:
                op["security"] = [{BEARER: []}]
                responses.setdefault("401", _problem(401, path))
                responses.setdefault("403", _problem(403, path))
                if "{" in path:
                    responses.setdefault("404", _problem(404, path))
            if method == "post" and path.startswith(INGEST_PATHS):
                responses.setdefault("413", _problem(413, path))
                responses.setdefault("503", _problem(503, path))
            for code, response in responses.items():  # a route's own error descriptions: the problem body
                if code[0] in "45" and not response.get("content"):
                    response["content"] = _error_body(path)
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    return doc


def install(app: FastAPI) -> None:
    """Serve :func:`describe`'s document as the app's OpenAPI (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = describe(get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
