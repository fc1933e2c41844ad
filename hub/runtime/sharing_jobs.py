"""How the stream worker runs sharing: a follower task beside the stream, and (delivering workers) one timer.

``follow(store, owner, wake)`` runs for the life of the worker: it follows the timeline's change
feed (:mod:`hub.sharing.follower`, in a thread), woken at once when this worker projected a batch
(``wake``) and otherwise every ``POLL`` seconds (a change another worker projected). Where the
worker delivers (``HUB_DELIVERY_MODE`` ``worker``, or ``auto`` for a bare ``hub worker``) it then
writes the decisions' audit trail and starts a delivery pass as soon as a pass queued something,
and ``tick(store, owner)`` (a 1-second faust timer) delivers whatever is due — retries, inbox rechecks —
escalates unacknowledged deliveries and, every ``HUB_SHARING_READINESS_INTERVAL`` seconds (default
300), sweeps readiness alerts and report requests. Where it does not (``process``), the worker only
decides and ``hub deliver`` (:mod:`hub.sharing.deliverer`) does all of that in a process of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import httpx
from sqlalchemy.exc import SQLAlchemyError

from hub.core.errors import HubError
from hub.core.logging import get_logger
from hub.core.settings import sharing_settings
from hub.db.lease import CHORES, Lease
from hub.db.store import Store
from hub.sharing import audit_trail
from hub.sharing.delivery import deliver_due
from hub.sharing.follower import LEASE, Follower
from hub.sharing.readiness import sweep

log = get_logger(__name__)
#: seconds between looks at the change feed when nothing woke the follower
POLL = 0.2


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
_CHORES_LOCK = threading.Lock()


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


async def follow(store: Store, owner: str, wake: asyncio.Event, *, deliver: bool = True) -> None:
    """Follow the change feed until cancelled; with ``deliver``, decisions are audited and deliveries
    started as they come (without, that is left to ``hub deliver``).

    A failing pass (the database restarting, a bug) is logged and tried again with a growing pause,
    up to 30 s: it never stops the stream worker it runs beside, and its errors show in the logs.
    """
    follower = Follower(store, owner)
    pause = 1.0
    try:
        while True:
            try:
                step = await asyncio.to_thread(follower.step)
                result = step.result
                if deliver and (result.decisions or result.cancelled or result.notices):
                    await asyncio.to_thread(audit_under_lease, store, owner)
            except (HubError, SQLAlchemyError) as exc:
                log.warning("sharing.follow_failed", error=type(exc).__name__, reason=str(exc)[:200])
                await asyncio.sleep(pause)
                pause = min(pause * 2, 30.0)
                continue
            except Exception as exc:
                log.error("sharing.follow_error", error=type(exc).__name__, reason=str(exc)[:200])
                await asyncio.sleep(pause)
                pause = min(pause * 2, 30.0)
                continue
            pause = 1.0
            if deliver and result.has_work:
                kick(store)
            if not step.held:  # another worker follows the feed: look again when its lease could lapse
                await asyncio.sleep(LEASE.total_seconds() / 3)
            elif not step.more:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), POLL)
            wake.clear()
    finally:
        with contextlib.suppress(HubError, SQLAlchemyError):
            await asyncio.to_thread(follower.release)


def audit_under_lease(store: Store, owner: str) -> int:
    """Copy new decisions into the audit log if ``owner`` holds the chores lease; how many were written.

    One writer at a time, however many delivering workers run (and, in one worker, its follower and
    its timer): two copying the same decisions at once would record them twice.
    """
    with _CHORES_LOCK:
        if not Lease(store, CHORES, owner).hold():
            return 0
        return audit_trail.record_new(store)


async def tick(store: Store, owner: str) -> None:
    kick(store, escalate=True)
    try:
        await asyncio.to_thread(audit_under_lease, store, owner)  # decisions made outside the follower
        interval = sharing_settings().readiness_interval
        if time.monotonic() - _RT.last_sweep >= interval:
            _RT.last_sweep = time.monotonic()
            await asyncio.to_thread(sweep, store)
    except (HubError, SQLAlchemyError) as exc:  # the next tick tries again
        log.warning("sharing.tick_failed", error=type(exc).__name__, reason=str(exc)[:200])
    except Exception as exc:  # never let the timer take the stream worker down
        log.error("sharing.tick_error", error=type(exc).__name__, reason=str(exc)[:200])


async def close() -> None:
    """Close the delivery HTTP client (on the worker's shutdown)."""
    if _RT.client is not None:
        client, _RT.client = _RT.client, None
        await client.aclose()
