"""Server-Sent Events of a set of households' timeline changes, resumable by change id.

The household stream and the coordinator's caseload stream are the same loop over the change feed
(:func:`hub.stream.readmodel.changes_since`); they differ only in which households they follow, which
a caseload re-reads on every round so a household joining the caseload is followed at once. A
coordinator's streams also carry the coordination alerts raised and resolved in the same feed
(events ``alert``, ``alert_resolved`` and ``alert_corrected``, :func:`hub.sharing.coordination.alert_changes`), in order
with the entries and resumable by the same ids; nobody else's do.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import Request
from sse_starlette.sse import EventSourceResponse

from hub.core.limits import row_id
from hub.db.store import Store
from hub.governance.auth import Principal
from hub.sharing.coordination import alert_changes
from hub.sharing.visibility import ReadView
from hub.stream import readmodel


def resume_position(last_event_id: str | None, after: int | None = None) -> int:
    """Where a stream starts: after ``after`` if given, else after the Last-Event-ID, else from the start."""
    if after is not None:
        return after
    return row_id(last_event_id or "") or 0


def visible_changes(store: Store, principal: Principal | None, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The changes as the read policy lets ``principal`` see their entries; hidden ones are left out."""
    view = ReadView.load(store, principal, {r["household_id"] for r in rows})
    out = []
    for row in rows:
        seen = view.present(row["household_id"], row, keep=("seq", "household_id", "kind"))
        if seen is not None:
            out.append(seen)
    return out


#: the roles whose streams carry the coordination alerts of the households they follow
ALERT_READERS = frozenset({"coordinator"})
PAGE = 200


def feed_page(store: Store, ids: list[str], after: int,
              principal: Principal | None) -> tuple[int, list[dict[str, Any]]]:
    """The next page of the feed after ``after``: where it ends, and the changes and alerts shown in it."""
    rows = readmodel.changes_since(store, ids, after, PAGE)
    shown = visible_changes(store, principal, rows) if rows else []
    end = rows[-1]["seq"] if rows else after
    if principal is not None and principal.role in ALERT_READERS:
        upto = end if len(rows) == PAGE else None
        raised = [{**a, "event_id": str(a["alert_id"])} for a in alert_changes(store, ids, after, upto)]
        shown = sorted(shown + raised, key=lambda r: r["seq"])
        end = max(end, raised[-1]["seq"]) if raised else end
    return end, shown


def change_stream(request: Request, store: Store, households: Callable[[], Awaitable[list[str]]], position: int,
                  poll_interval: float, principal: Principal | None) -> EventSourceResponse:
    """Every change after ``position`` to the households ``households()`` names, then new ones as they come,
    each as the read policy lets ``principal`` see it. A hidden change is skipped: no event carries its id,
    and resuming after a later id never replays it."""

    async def events() -> AsyncIterator[dict[str, str]]:
        seen = position
        while not await request.is_disconnected():
            ids = await households()
            end, shown = await asyncio.to_thread(feed_page, store, ids, seen, principal) if ids else (seen, [])
            moved, seen = end > seen, end
            for row in shown:
                yield {"id": str(row["seq"]), "event": row["kind"], "data": json.dumps(row)}
            if not moved:
                await asyncio.sleep(poll_interval)

    return EventSourceResponse(events(), ping=15)
