"""Size and shape limits at the edge, before any route reads a request (a pure ASGI middleware).

* The body limit (``HUB_MAX_BODY_BYTES``) on every route, counted on the bytes as they stream in,
  so a chunked body without a Content-Length is held to it too: 413.
* JSON nesting (:data:`hub.core.limits.MAX_JSON_DEPTH`) for JSON bodies, measured without parsing,
  before a recursive parser can exhaust the stack: 422. NDJSON is checked line by line by its reader,
  so one deep line refuses only itself.
* A path holding a control character or a lone surrogate (``%00``, ``%FF``): no hub id holds one, and
  PostgreSQL refuses NUL in text, so such a path would fail in the first query (a 500, or the refusal's
  own audit failing): 404, before any route or the authorisation guard reads it.

Refusals are problem documents, OperationOutcomes on the ``/fhir`` routes; they say which limit,
never what the body held.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.api.problems import problem
from hub.core.errors import issue
from hub.core.limits import DEPTH_RULE, MAX_JSON_DEPTH, ascii_digits, too_deep, unholdable

_WITH_BODY = ("POST", "PUT", "PATCH", "DELETE")
_LINE_FORMATS = ("ndjson", "jsonl")


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "" or ("json" in media and not any(f in media for f in _LINE_FORMATS))


def refusal(path: str, status: int, detail: str) -> JSONResponse:
    """413 (size) or 422 (shape), as the route family answers errors."""
    if path == "/fhir" or path.startswith("/fhir/"):
        code = "too-costly" if status == 413 else "structure"
        return JSONResponse({"resourceType": "OperationOutcome", "issue": [issue(code, detail)]},
                            status_code=status, media_type="application/fhir+json")
    if status == 413:
        return problem(413, "too-large", "Request body too large", detail)
    return problem(422, "validation", "Request breaks a shape limit", detail,
                   [{"pointer": "", "detail": DEPTH_RULE}])


class EdgeLimits:
    """Refuse bodies over ``max_bytes`` (streamed or declared), JSON nested too deep, and paths no id matches."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and unholdable(scope["path"]):  # never the path: it may hold a name
            await problem(404, "not-found", "Not found", "no such resource")(scope, receive, send)
            return
        if scope["type"] != "http" or scope["method"] not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        too_large = f"the limit is {self.max_bytes} bytes; split the batch"
        declared = headers.get("content-length", "")
        if ascii_digits(declared) and int(declared) > self.max_bytes:
            await refusal(scope["path"], 413, too_large)(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await refusal(scope["path"], 413, too_large)(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if _is_json(headers.get("content-type", "")) and too_deep(body):
            detail = f"JSON may nest at most {MAX_JSON_DEPTH} levels of arrays and objects"
            await refusal(scope["path"], 422, detail)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)
