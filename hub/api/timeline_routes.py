"""Coordinator read routes: households, a family's timeline, the team around each child, upcoming
appointments, and a live stream of new and changed entries (Server-Sent Events)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from sse_starlette.sse import EventSourceResponse

from hub.api.streams import change_stream, resume_position
from hub.core.errors import NotFoundError
from hub.core.logging import get_logger
from hub.ingest.services import Services
from hub.sharing.policy_timeline import read_timeline
from hub.sharing.visibility import ReadView
from hub.stream import readmodel

log = get_logger(__name__)
Sector = Literal["health", "social_care", "education", "family", "hub"]


def timeline_router(services: Services, *, poll_interval: float = 0.1) -> APIRouter:
    router = APIRouter(prefix="/v1/households", tags=["timeline"])
    store = services.store

    async def known(household_id: str) -> list[str]:
        if not await asyncio.to_thread(readmodel.household_exists, store, household_id):
            raise NotFoundError("no such household")
        return await asyncio.to_thread(readmodel.children, store, household_id)

    @router.get("")
    async def list_households() -> list[dict[str, Any]]:
        rows = await asyncio.to_thread(readmodel.households, store)
        return [{"household_id": h.household_id, "children": h.children} for h in rows]

    def reader(request: Request, household_id: str) -> ReadView:
        """The caller's view of the household under the read policy (consent/reading.py)."""
        return ReadView.load(store, getattr(request.state, "principal", None), [household_id])

    @router.get("/{household_id}/timeline")
    async def household_timeline(
        request: Request,
        household_id: str,
        child_id: str | None = None,
        sector: Sector | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        cursor: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> dict[str, Any]:
        """A family's entries from every agency in event-time order, as the read policy lets the caller see
        them (``visibility`` shown or redacted, with ``reason_code``); ``next_cursor`` fetches the next page."""
        started = time.perf_counter()
        rows, nxt = await asyncio.to_thread(read_timeline, store, getattr(request.state, "principal", None),
                                            household_id, child_id=child_id, sector=sector, kind=kind, since=since,
                                            until=until, cursor=cursor, limit=limit)
        if not rows and cursor is None:
            await known(household_id)
        log.info("timeline.read", household=household_id, entries=len(rows),
                 ms=round((time.perf_counter() - started) * 1000, 2))
        return {"household_id": household_id, "entries": rows, "next_cursor": nxt}

    @router.get("/{household_id}/children/{child_id}/team")
    async def child_team(request: Request, household_id: str, child_id: str) -> dict[str, Any]:
        """Every service and named professional involved with the child, from the entries the caller may see."""
        if child_id not in await known(household_id):
            raise NotFoundError("no such child in this household")
        view = await asyncio.to_thread(reader, request, household_id)
        members = await asyncio.to_thread(readmodel.team, store, household_id, child_id,
                                          view.records_view(household_id))
        return {"child_id": child_id, "team": [asdict(m) for m in members]}

    @router.get("/{household_id}/appointments")
    async def upcoming(request: Request, household_id: str) -> dict[str, Any]:
        """Appointments still ahead for each child the caller may see, moved ones at their new time."""
        await known(household_id)
        view = await asyncio.to_thread(reader, request, household_id)
        by_child = await asyncio.to_thread(readmodel.upcoming_appointments, store, household_id, datetime.now(UTC),
                                           view.records_view(household_id))
        seen = set(view.visible_children(household_id))
        return {"household_id": household_id,
                "children": {c: [asdict(a) for a in appts] for c, appts in by_child.items() if c in seen}}

    @router.get("/{household_id}/stream")
    async def stream(
        request: Request,
        household_id: str,
        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
        after: Annotated[int | None, Query(description="Resume after this change id (as Last-Event-ID).")] = None,
    ) -> EventSourceResponse:
        """Server-Sent Events of new and changed entries. Each event's id is a change id; reconnecting
        with Last-Event-ID resumes exactly after it, with no gap and no repeat."""
        await known(household_id)

        async def household() -> list[str]:
            return [household_id]

        return change_stream(request, store, household, resume_position(last_event_id, after), poll_interval,
                             getattr(request.state, "principal", None))

    return router
