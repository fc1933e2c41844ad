"""Server-Sent Events of a set of households' timeline changes, resumable by change id.

The household stream and the coordinator's caseload stream are the same loop over the change feed
(:func:`hub.stream.readmodel.changes_since`); they differ only in which households they follow, which
a caseload re-reads on every round so a household joining the caseload is followed at once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import Request
from sse_starlette.sse import EventSourceResponse

from hub.db.store import Store
from hub.governance.auth import Principal
from hub.sharing.visibility import ReadView
from hub.stream import readmodel


def resume_position(last_event_id: str | None, after: int | None = None) -> int:
    """Where a stream starts: after ``after`` if given, else after the Last-Event-ID, else from the start."""
    if after is not None:
        return after
    resume = last_event_id or ""
    return int(resume) if resume.isdigit() else 0


def visible_changes(store: Store, principal: Principal | None, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The changes as the read policy lets ``principal`` see their entries; hidden ones are left out."""
    view = ReadView.load(store, principal, {r["household_id"] for r in rows})
    out = []
    for row in rows:
        seen = view.present(row["household_id"], row, keep=("seq", "household_id", "kind"))
        if seen is not None:
            out.append(seen)
    return out


def change_stream(request: Request, store: Store, households: Callable[[], Awaitable[list[str]]], position: int,
                  poll_interval: float, principal: Principal | None) -> EventSourceResponse:
    """Every change after ``position`` to the households ``households()`` names, then new ones as they come,
    each as the read policy lets ``principal`` see it. A hidden change is skipped: no event carries its id,
    and resuming after a later id never replays it."""

    async def events() -> AsyncIterator[dict[str, str]]:
        seen = position
        while not await request.is_disconnected():
            ids = await households()
            rows = await asyncio.to_thread(readmodel.changes_since, store, ids, seen) if ids else []
            if rows:
                seen = rows[-1]["seq"]
            shown = await asyncio.to_thread(visible_changes, store, principal, rows) if rows else []
            for row in shown:
                yield {"id": str(row["seq"]), "event": row["kind"], "data": json.dumps(row)}
            if not rows:
                await asyncio.sleep(poll_interval)

    return EventSourceResponse(events(), ping=15)
