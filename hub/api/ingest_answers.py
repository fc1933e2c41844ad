"""How the ingest routes answer: RFC 9457 problem documents and batch summaries for ``/v1/ingest/*``,
FHIR OperationOutcomes and ``*-response`` Bundles for ``/fhir``.

Every problem is rendered by :class:`hub.core.errors.Problem` itself (``as_rfc9457``, ``as_issue``);
how an error is answered comes from its class (status, retryable, headers).
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from connectors.health.fhir import Decoded, Entry
from hub.api.problems import BASE, PROBLEM_JSON, problem, problems_of
from hub.core.errors import ForbiddenError, HubError, ValidationError, issue
from hub.ingest.batch import RowResult, Summary

FHIR_MEDIA = "application/fhir+json"

# --- RFC 9457 answers -------------------------------------------------------------------------


#: slug of a batch none of whose rows was accepted, by its status
_REFUSED_SLUG = {422: ValidationError.slug, 409: "conflict", 413: "too-large"}


def summary_response(summary: Summary) -> JSONResponse:
    status = summary.status_code
    if status not in _REFUSED_SLUG:
        return JSONResponse(summary.as_json(), status_code=status)
    body: dict[str, Any] = {
        "type": BASE + _REFUSED_SLUG[status],
        "title": "No row of the batch was accepted",
        "status": status,
        "detail": f"{summary.rejected} row(s) refused; nothing was accepted",
        "errors": problems_of(summary.problems, with_row=True),
        **summary.as_json(),
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def unsupported(accepted: tuple[str, ...], media: str) -> JSONResponse:
    return problem(
        415,
        "unsupported-media-type",
        "Unsupported content type",
        f"content type {media or '(none)'} is not accepted; send {', '.join(accepted)}",
        headers={"Accept-Post": ", ".join(accepted)},
    )


def unreadable(exc: ValidationError) -> JSONResponse:
    return problem(400, "malformed", exc.title, f"{len(exc.problems)} problem(s) with the payload",
                   problems_of(exc.problems))


def too_large(limit: int) -> JSONResponse:
    return problem(413, "too-large", "Request body too large", f"the limit is {limit} bytes; split the batch")


# --- FHIR answers -----------------------------------------------------------------------------


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
    return [p.as_issue(with_entry=True) for p in summary.problems]


def error_outcome(exc: HubError) -> JSONResponse:
    """A hub error as an OperationOutcome: transient (with Retry-After) when retryable, its own 4xx
    (a record too large, a conflicting resend) when the sender must change the request, else an exception."""
    if exc.retryable:
        return operation_outcome(exc.status, [issue("transient", f"{exc}; retry with the same request")],
                                 headers=dict(exc.headers))
    if isinstance(exc, ForbiddenError):  # the agency's registration refuses what it sent
        return operation_outcome(403, [issue("forbidden", str(exc))])
    if isinstance(exc, ValidationError):
        return operation_outcome(exc.status, [p.as_issue(_ISSUE_CODE.get(exc.status)) for p in exc.problems])
    if exc.status < 500:
        return operation_outcome(exc.status, [issue(_ISSUE_CODE.get(exc.status, "processing"), str(exc))])
    return operation_outcome(500, [issue("exception", type(exc).__name__)])


#: OperationOutcome issue codes of refusals that are not plain invalid input
_ISSUE_CODE = {401: "login", 404: "not-found", 409: "conflict", 413: "too-costly"}


def unreadable_outcome(exc: ValidationError) -> JSONResponse:
    code = "structure" if exc.title.startswith("Malformed") else "invalid"
    return operation_outcome(400, [p.as_issue(code) for p in exc.problems])


def mismatch_outcome(decoded: Decoded, route: str, expected: str | None) -> JSONResponse | None:
    """400 when the payload is not what the endpoint takes (a Bundle at /fhir, one resource at /fhir/{type})."""
    single = decoded.entries[0].root if decoded.entries else "Resource"
    actual = "Bundle" if decoded.bundle_type is not None else single
    want = expected or "Bundle"
    if actual == want:
        return None
    hint = "" if expected else "; POST a single resource to /fhir/{type}"
    message = f"resourceType '{actual}' does not match the endpoint {route} (expected '{want}'){hint}"
    return operation_outcome(400, [issue("invalid", message, "resourceType")])


def _status_line(status: str) -> str:
    return "201 Created" if status == "accepted" else "200 OK"


def resource_type(entry: Entry) -> str:
    """The type of an entry's resource (``root`` is where it sits in the payload)."""
    kind = entry.resource.get("resourceType") if isinstance(entry.resource, dict) else None
    return kind if isinstance(kind, str) else entry.root


def location(base: str, resource_type: str, result: RowResult) -> str:
    """The FHIR URL of what was recorded: ``[base]/{type}/{id}/_history/{version}``, the id being the
    hub's event id (the same for every version of the source resource)."""
    return f"{base.rstrip('/')}/{resource_type}/{result.event_id}/_history/{result.source_version}"


def _single_resource(summary: Summary, base: str, resource_type: str) -> JSONResponse:
    if not summary.results:
        return operation_outcome(
            200, [issue("informational", "context-only resource: checked, nothing recorded", severity="information")]
        )
    r = summary.results[0]
    return operation_outcome(
        201 if r.status == "accepted" else 200,
        [issue("informational", f"{r.status}: {resource_type}/{r.event_id} version {r.source_version}",
               severity="information")],
        headers={"Location": location(base, resource_type, r), "ETag": f'W/"{r.source_version}"'},
    )


def _entry_response(result: RowResult | None, errors: list[dict[str, Any]] | None, base: str,
                    resource_type: str) -> dict[str, Any]:
    if result is not None:
        return {
            "status": _status_line(result.status),
            "location": location(base, resource_type, result),
            "etag": f'W/"{result.source_version}"',
        }
    if errors is not None:
        return {"status": "422 Unprocessable Entity", "outcome": {"resourceType": "OperationOutcome", "issue": errors}}
    return {"status": "200 OK"}


def fhir_response(decoded: Decoded, summary: Summary, base: str) -> JSONResponse:
    """The answer to an accepted FHIR payload: an OperationOutcome for one resource (or a refused
    transaction), else a ``transaction-response`` / ``batch-response`` Bundle, entry by entry."""
    if summary.rejected and (decoded.atomic or not summary.results):
        status = summary.status_code if not summary.results else 422
        return operation_outcome(status, outcome_of(summary))
    if decoded.bundle_type is None:
        return _single_resource(summary, base, resource_type(decoded.entries[0]))
    by_row = {r.row: r for r in summary.results}
    errors: dict[int | None, list[dict[str, Any]]] = {}
    for p in summary.problems:
        errors.setdefault(p.row, []).append(p.as_issue())
    entries = [{"response": _entry_response(by_row.get(e.row), errors.get(e.row), base, resource_type(e))}
               for e in decoded.entries]
    kind = "transaction-response" if decoded.bundle_type == "transaction" else "batch-response"
    return JSONResponse({"resourceType": "Bundle", "type": kind, "entry": entries}, media_type=FHIR_MEDIA)
