"""Health probes for a process without the HTTP API (``hub deliver``), served with aiohttp.

``GET <path>`` answers what ``answer(path)`` returns — (status, JSON document) — or 404. No route
carries data, so none needs a token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

Answer = Callable[[str], tuple[int, dict[str, Any]] | None]


async def serve_probes(answer: Answer, host: str, port: int) -> web.AppRunner:
    """Start serving; the caller stops it with ``await runner.cleanup()``."""

    async def handle(request: web.Request) -> web.Response:
        status, doc = answer(request.path) or (404, {"error": "not found"})
        return web.json_response(doc, status=status)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
