"""How the stream worker runs sharing: one call after each projected batch, one timer.

``after_projection(store, decoded)`` runs the sharing step (in a thread) and, when it queued
something, starts a delivery pass at once, so a permitted report reaches its webhook within about a
batch of being accepted. ``tick(store)`` (a 1-second faust timer) delivers whatever is due — retries,
inbox rechecks — escalates unacknowledged deliveries and, every ``HUB_SHARING_READINESS_INTERVAL``
seconds (default 300), sweeps readiness alerts and report requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Sequence
from typing import Any

import httpx

from hub.errors import HubError
from hub.logging import get_logger
from hub.sharing import audit_trail
from hub.sharing.delivery import deliver_due
from hub.sharing.processor import SharingResult, process
from hub.sharing.readiness import sweep
from hub.store import Store

log = get_logger(__name__)


class _Runtime:
    def __init__(self) -> None:
        self.client: httpx.AsyncClient | None = None
        self.running: asyncio.Task[None] | None = None
        self.again = False
        self.last_sweep = 0.0

    def http(self) -> httpx.AsyncClient:
        if self.client is None:
            self.client = httpx.AsyncClient(timeout=10.0, limits=httpx.Limits(max_connections=64))
        return self.client


_RT = _Runtime()


async def _deliver_loop(store: Store, escalate: bool) -> None:
    while True:
        _RT.again = False
        try:
            await deliver_due(store, _RT.http(), escalate=escalate)
        except (HubError, OSError, httpx.HTTPError) as exc:  # the timer retries
            log.warning("sharing.deliver_failed", error=type(exc).__name__, reason=str(exc)[:200])
        except Exception as exc:
            log.error("sharing.deliver_error", error=type(exc).__name__, reason=str(exc)[:200])
        if not _RT.again:
            return


def kick(store: Store, *, escalate: bool = False) -> None:
    """Start a delivery pass now (or once more after the one running)."""
    if _RT.running is not None and not _RT.running.done():
        _RT.again = True
        return
    _RT.running = asyncio.get_running_loop().create_task(_deliver_loop(store, escalate))


async def after_projection(store: Store, decoded: Sequence[tuple[str, str, dict[str, Any]]]) -> SharingResult:
    result = await asyncio.to_thread(process, store, decoded)
    if result.decisions or result.cancelled or result.notices:
        await asyncio.to_thread(audit_trail.record_new, store)
    if result.has_work:
        kick(store)
    return result


async def tick(store: Store) -> None:
    kick(store, escalate=True)
    with contextlib.suppress(HubError):
        await asyncio.to_thread(audit_trail.record_new, store)  # decisions made outside the stream step
    interval = float(os.environ.get("HUB_SHARING_READINESS_INTERVAL", "300"))
    if time.monotonic() - _RT.last_sweep >= interval:
        _RT.last_sweep = time.monotonic()
        with contextlib.suppress(HubError):
            await asyncio.to_thread(sweep, store)
