"""What makes ``/fhir`` a FHIR R4 endpoint beyond its POST routes.

* Every error on a ``/fhir`` route is an OperationOutcome: the hub's own errors (401 no token, 403
  not allowed, 404, 409, 413, 415, 422) through :func:`error_handler`, FastAPI's request checks
  through :func:`validation_handler`, and Starlette's (unknown path, wrong method) through
  :func:`http_error_handler`. Elsewhere the same errors stay RFC 9457 problem documents.
* JSON or XML by ``_format`` (``json``, ``xml``, or a media type) or else ``Accept``
  (``application/fhir+xml``, ``application/xml``, ``text/xml``): :class:`FhirFormat` rewrites a
  ``/fhir`` answer to XML with ``fhir.resources``; a resource it cannot write is answered 406 with an
  OperationOutcome, and a ``_format`` naming neither is 406 too.
* ``GET /fhir/metadata``: a CapabilityStatement generated from the app's ``/fhir`` routes and the
  resource types the health mapping reads (:func:`capability_statement`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connectors.health import default_mapping
from connectors.health.fhir import model_class
from hub.api.fhir_r4 import FHIR_VERSION
from hub.api.ingest_answers import FHIR_MEDIA, error_outcome, operation_outcome
from hub.api.problems import http_problem_handler, hub_error_handler, request_validation_handler
from hub.core.errors import HubError, issue

FHIR_XML = "application/fhir+xml"
_XML_NAMES = {"xml", "text/xml", "application/xml", FHIR_XML}
_JSON_NAMES = {"json", "application/json", FHIR_MEDIA}
#: HTTP status → OperationOutcome issue code, for errors that carry no code of their own
_CODES = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
          406: "not-supported", 409: "conflict", 413: "too-costly", 415: "not-supported", 422: "invalid"}


def is_fhir(path: str) -> bool:
    return path == "/fhir" or path.startswith("/fhir/")


async def error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HubError)
    if not is_fhir(request.url.path):
        return await hub_error_handler(request, exc)
    answer = error_outcome(exc)
    if exc.status == 401:
        answer.headers["WWW-Authenticate"] = "Bearer"
    return answer


async def validation_handler(request: Request, exc: Exception) -> JSONResponse:
    if not is_fhir(request.url.path):
        return await request_validation_handler(request, exc)
    assert isinstance(exc, RequestValidationError)
    issues = [issue("invalid", str(e["msg"]), ".".join(str(p) for p in e["loc"][1:])) for e in exc.errors()]
    return operation_outcome(422, issues)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if is_fhir(request.url.path):
        message = str(exc.detail)  # never the path: a caller may have typed an identifier into it
        return operation_outcome(exc.status_code, [issue(_CODES.get(exc.status_code, "processing"), message)],
                                 headers=headers or None)
    return await http_problem_handler(request, exc)


def wanted_format(query: str, accept: str) -> str | None:
    """``json``, ``xml``, or None when ``_format`` names neither (406)."""
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key == "_format":
            value = value.replace("%2B", "+").replace("%2F", "/").split(";")[0].strip().lower()
            return "xml" if value in _XML_NAMES else "json" if value in _JSON_NAMES else None
    kinds = [a.split(";")[0].strip().lower() for a in accept.split(",")]
    if any(k in _XML_NAMES for k in kinds) and not any(k in _JSON_NAMES for k in kinds):
        return "xml"
    return "json"


def to_xml(resource: dict[str, Any]) -> bytes | None:
    """The resource as FHIR XML, or None if ``fhir.resources`` cannot write it."""
    cls = model_class(resource.get("resourceType"))
    if cls is None:
        return None
    try:
        return bytes(cls.model_validate(resource).model_dump_xml())
    except Exception:  # a resource the models cannot hold or write
        return None


def _not_acceptable(message: str) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"resourceType": "OperationOutcome", "issue": [issue("not-supported", message)]}).encode()
    return 406, {"content-type": FHIR_MEDIA}, body


class FhirFormat:
    """Answer ``/fhir`` routes in XML when asked (``_format`` or ``Accept``); 406 when it cannot."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_fhir(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        fmt = wanted_format(scope.get("query_string", b"").decode(), headers.get("accept", ""))
        if fmt == "json":
            await self.app(scope, receive, send)
            return
        start: Message = {}
        chunks: list[bytes] = []

        async def keep(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        if fmt is None:
            status, out_headers, body = _not_acceptable("_format names neither json nor xml; ask for one of them")
        else:
            await self.app(scope, receive, keep)
            status, body = start["status"], b"".join(chunks)
            out_headers = {k.decode().lower(): v.decode() for k, v in start.get("headers", [])}
            if out_headers.get("content-type", "").startswith(FHIR_MEDIA):
                xml = to_xml(json.loads(body)) if body else b""
                if xml is None:
                    status, out_headers, body = _not_acceptable("this answer cannot be written as FHIR XML; ask "
                                                                "for application/fhir+json")
                else:
                    body = xml
                    out_headers["content-type"] = FHIR_XML + "; charset=utf-8"
        out_headers["content-length"] = str(len(body))
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.encode(), v.encode()) for k, v in out_headers.items()]})
        await send({"type": "http.response.body", "body": body})


def capability_statement(app: FastAPI, base: str) -> dict[str, Any]:
    """A CapabilityStatement of what this server does at ``/fhir``: the interactions its routes offer
    and, for ``create``, the resource types the health mapping reads."""
    paths = app.openapi().get("paths", {})  # every route the app serves, however it was included
    methods = {(m.upper(), path) for path, ops in paths.items() if is_fhir(path) for m in ops}
    mapped = sorted({rule.kind for rule in default_mapping().rules})
    resources: list[dict[str, Any]] = []
    if ("POST", "/fhir/{resource_type}") in methods:
        resources = [{"type": t, "interaction": [{"code": "create"}],
                      "documentation": "Recorded as a hub event; answered with a Location of its version"}
                     for t in mapped]
    interactions = [{"code": c} for c in ("transaction", "batch") if ("POST", "/fhir") in methods]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "kind": "instance",
        "software": {"name": "family-hub"},
        "implementation": {"description": "Family integration hub: FHIR R4 ingest", "url": base},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "application/fhir+xml"],
        "rest": [{
            "mode": "server",
            "security": {"service": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "OAuth"}]}],
                "description": "Bearer tokens of registered agencies (role agency)"},
            "resource": resources,
            "interaction": interactions,
        }],
    }


_CONSENT_STATUS = {"active": "active", "withdrawn": "inactive", "pending_confirmation": "proposed",
                   "invalid": "entered-in-error"}
HUB_DIRECTIVE_SYSTEM = "https://family-hub.example/fhir/NamingSystem/consent-directive"
NEEDS_CONFIRMATION = "https://family-hub.example/fhir/StructureDefinition/needs-young-person-confirmation"


def wants_fhir(request: Request) -> str | None:
    """``json`` or ``xml`` when a /v1 route's caller asks for FHIR (``_format`` or a FHIR ``Accept``)."""
    fmt = request.query_params.get("_format")
    if fmt is not None:
        return wanted_format("_format=" + fmt, "") or "json"
    accept = request.headers.get("accept", "").lower()
    if FHIR_XML in accept:
        return "xml"
    return "json" if FHIR_MEDIA in accept else None


def consent_bundle(directives: list[dict[str, Any]], self_url: str, base: str) -> dict[str, Any]:
    """A child's directives as a FHIR ``searchset`` Bundle of Consent resources: each as recorded, with
    the hub's status as Consent.status (withdrawn: inactive, awaiting confirmation: proposed) and the
    directive id as an identifier; a directive the hub could not read (no resource) is left out."""
    entries = []
    for d in directives:
        if not d.get("fhir"):
            continue
        resource = dict(d["fhir"])
        rid = "".join(c if c.isalnum() or c in "-." else "-" for c in d["directive_id"])[:64]
        resource["id"] = rid
        resource["status"] = _CONSENT_STATUS.get(d["status"], resource.get("status", "active"))
        ident = {"system": HUB_DIRECTIVE_SYSTEM, "value": d["directive_id"]}
        resource["identifier"] = [ident, *[i for i in resource.get("identifier", []) if i != ident]]
        if d.get("needs_young_person_confirmation"):
            resource["extension"] = [*resource.get("extension", []),
                                     {"url": NEEDS_CONFIRMATION, "valueBoolean": True}]
        entries.append({"fullUrl": f"{base}/Consent/{rid}", "resource": resource, "search": {"mode": "match"}})
    return {"resourceType": "Bundle", "type": "searchset", "total": len(entries),
            "link": [{"relation": "self", "url": self_url}], "entry": entries}


def fhir_answer(resource: dict[str, Any], fmt: str) -> Response:
    """A FHIR resource in JSON or, when asked, XML (406 with an OperationOutcome if it cannot be written)."""
    if fmt == "xml":
        xml = to_xml(resource)
        if xml is None:
            status, headers, body = _not_acceptable("this answer cannot be written as FHIR XML")
            return Response(body, status_code=status, headers=headers)
        return Response(xml, media_type=FHIR_XML)
    return JSONResponse(resource, media_type=FHIR_MEDIA)
