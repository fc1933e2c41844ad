"""RFC 9457 problem documents for every error the API answers with.

How a :class:`~hub.core.errors.HubError` is answered (status, ``type``, ``title``, retry headers)
is said by the error class itself; :func:`problem_of` is the one place that reads it.
"""

from __future__ import annotations

from http import HTTPStatus

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hub.core.errors import HubError, Problem, ValidationError, plain_error

PROBLEM_JSON = "application/problem+json"
BASE = "https://familyhub.invalid/problems/"


def problem(status: int, slug: str, title: str, detail: str = "", errors: list[dict[str, object]] | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, object] = {"type": BASE + slug, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def problems_of(problems: list[Problem], *, with_row: bool = False) -> list[dict[str, object]]:
    """The ``errors`` member of a problem document."""
    return [p.as_rfc9457(with_row=with_row) for p in problems]


def problem_of(exc: HubError) -> JSONResponse:
    """The problem document for an error, from the status, slug, title and headers its class declares."""
    headers = dict(exc.headers) or None
    if isinstance(exc, ValidationError):
        return problem(exc.status, exc.slug, exc.title, f"{len(exc.problems)} problem(s) in the request",
                       problems_of(exc.problems), headers=headers)
    detail = type(exc).__name__ if exc.status >= 500 and not exc.retryable else str(exc)
    return problem(exc.status, exc.slug, exc.title, detail, headers=headers)


async def hub_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HubError)
    return problem_of(exc)


async def request_validation_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # the field and the rule, never the value (FastAPI's own answer would echo ``input``)
    errors = [Problem("/" + "/".join(str(p) for p in loc[1:]), msg) for loc, msg in map(plain_error, exc.errors())]
    return problem(ValidationError.status, ValidationError.slug, "Invalid request",
                   f"{len(errors)} problem(s) in the request", problems_of(errors))


#: the routing errors Starlette raises itself: a path no route matches, a method the route does not take
_ROUTING_SLUGS = {404: "not-found", 405: "method-not-allowed"}


async def http_problem_handler(_request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own errors (no route for the path, a method the route does not take, a detail a route
    raised) as problem documents like every other error; never the path (a caller may have typed an
    identifier into it)."""
    assert isinstance(exc, StarletteHTTPException)
    phrase = HTTPStatus(exc.status_code).phrase
    detail = str(exc.detail)
    return problem(exc.status_code, _ROUTING_SLUGS.get(exc.status_code, f"http-{exc.status_code}"), phrase,
                   "" if detail == phrase else detail, headers=dict(exc.headers or {}) or None)
