"""RFC 9457 problem documents for every error the API answers with."""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from hub.core.errors import BrokerError, HubError, NotFoundError, StoreError, ValidationError
from hub.governance.auth import AuthError, ForbiddenError

PROBLEM_JSON = "application/problem+json"
BASE = "https://familyhub.invalid/problems/"


def problem(status: int, slug: str, title: str, detail: str = "", errors: list[dict[str, str]] | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, object] = {"type": BASE + slug, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


async def hub_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, ValidationError):
        return problem(422, "validation", exc.title, f"{len(exc.problems)} problem(s) in the request",
                       [{"pointer": p.location, "detail": p.message} for p in exc.problems])
    if isinstance(exc, AuthError):
        return problem(401, "unauthorised", "Authentication required", str(exc),
                       headers={"WWW-Authenticate": 'Bearer realm="familyhub"'})
    if isinstance(exc, ForbiddenError):
        return problem(403, "forbidden", "Forbidden", str(exc))
    if isinstance(exc, NotFoundError):
        return problem(404, "not-found", "Not found", str(exc))
    if isinstance(exc, BrokerError | StoreError):
        return problem(503, "unavailable", "Temporarily unavailable; retry with the same request", str(exc),
                       headers={"Retry-After": "2"})
    assert isinstance(exc, HubError)
    return problem(500, "internal", "Internal error", type(exc).__name__)


async def request_validation_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"pointer": "/" + "/".join(str(p) for p in e["loc"][1:]), "detail": e["msg"]} for e in exc.errors()]
    return problem(422, "validation", "Invalid request", f"{len(errors)} problem(s) in the request", errors)
