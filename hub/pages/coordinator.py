"""The coordinator's pages: the caseload ordered by what needs attention, a family's page, acknowledging an
alert, and the live feed a family page listens to (Server-Sent Events, as the API's household stream)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from hub.api.streams import change_stream, resume_position
from hub.core.errors import NotFoundError
from hub.core.limits import row_id
from hub.ingest.services import Services
from hub.pages import gather
from hub.pages.access import PageGate
from hub.pages.render import page
from hub.pages.session import check_csrf
from hub.sharing.alerts import acknowledge_alert
from hub.stream import readmodel

Sector = Literal["", "health", "social_care", "education", "family", "hub"]
CASELOAD = ("GET", "/v1/coordinators/{coordinator_id}/caseload")
#: the API routes a family page draws on (each checked, the timeline's read audited)
FAMILY_SOURCES = (("GET", "/v1/households/{household_id}/timeline"),
                  ("GET", "/v1/households/{household_id}/appointments"),
                  ("GET", "/v1/households/{household_id}/readiness"),
                  ("GET", "/v1/households/{household_id}/shares"),
                  ("GET", "/v1/households/{household_id}/alerts"),
                  ("GET", "/v1/households/{household_id}/clocks"))
CHILD_SOURCES = (("GET", "/v1/households/{household_id}/children/{child_id}/team"),
                 ("GET", "/v1/households/{household_id}/children/{child_id}/consents"))
READINESS = ("GET", "/v1/households/{household_id}/readiness")
ALERTS = ("GET", "/v1/households/{household_id}/alerts")
CLOCKS = ("GET", "/v1/households/{household_id}/clocks")
SUMMARY = ("GET", "/v1/households/{household_id}/children/{child_id}/summary")


def coordinator_pages(services: Services, gate: PageGate, poll_interval: float) -> APIRouter:
    router = APIRouter(tags=["pages"], include_in_schema=False)
    store = services.store

    @router.get("/caseload")
    async def caseload(request: Request) -> Response:
        """The coordinator's families, those with the most in the way of an appointment first."""
        me = await gate.enter(request, CASELOAD, coordinator_id=request.session.get("who", {}).get("sub", ""))
        households = [hh for hh in await asyncio.to_thread(gate.caseload, me.subject)
                      if await gate.allowed(me, READINESS, household_id=hh)
                      and await gate.allowed(me, ALERTS, household_id=hh)
                      and await gate.allowed(me, CLOCKS, household_id=hh)]
        rows = await asyncio.to_thread(gather.caseload, store, me, households)
        return page(request, "caseload.html", rows=rows)

    @router.get("/households/{household_id}")
    async def family(request: Request, household_id: str, sector: Sector = "", kind: str = "",
                     child_id: str = "", cursor: str = "") -> Response:
        """A family: per child its timeline, team, appointments with report readiness, consents and shares;
        the household's alerts with an acknowledge button; live updates."""
        me = await gate.enter(request, *FAMILY_SOURCES)
        if not await asyncio.to_thread(readmodel.household_exists, store, household_id):
            raise NotFoundError("no such household")
        data = await asyncio.to_thread(gather.family, store, me, household_id, sector=sector, kind=kind[:80],
                                       child_id=child_id or None, cursor=cursor[:200] or None)
        for child in data["children"]:
            for source in CHILD_SOURCES:
                if not await gate.allowed(me, source, household_id=household_id, child_id=child["child_id"]):
                    raise NotFoundError("no such household")
        readable = [c["child_id"] for c in data["children"]
                    if await gate.allowed(me, SUMMARY, household_id=household_id, child_id=c["child_id"])]
        summaries = await asyncio.to_thread(gather.shared_summaries, store, services.vault, household_id, readable)
        for child in data["children"]:
            child["summary"] = summaries.get(child["child_id"])
        alerts = await asyncio.to_thread(gather.alerts, store, household_id)
        after = await asyncio.to_thread(gather.latest_change, store, household_id)
        return page(request, "family_page.html", family=data, alerts=alerts, sector=sector, kind=kind,
                    live=f"/households/{household_id}/live?after={after}")

    @router.post("/households/{household_id}/alerts/{alert_id}/acknowledge")
    async def acknowledge(request: Request, household_id: str, alert_id: str,
                          csrf: Annotated[str | None, Form()] = None) -> Response:
        check_csrf(request, csrf)
        me = await gate.enter(request, ("POST", "/v1/households/{household_id}/alerts/{alert_id}/acknowledge"))
        number = row_id(alert_id)
        if number is None:
            raise NotFoundError("no such alert for this household")
        await asyncio.to_thread(acknowledge_alert, store, household_id, number, actor=me.subject,
                                actor_role=me.role)
        return RedirectResponse(f"/households/{household_id}#alerts", status_code=303)

    @router.get("/households/{household_id}/live")
    async def live(request: Request, household_id: str, after: int = 0) -> Response:
        """New and changed entries of the household after change ``after`` (the page's own position) as the
        reader may see them; the page reloads its parts when one comes."""
        me = await gate.enter(request, ("GET", "/v1/households/{household_id}/stream"))
        position = after
        async def household() -> list[str]:
            return [household_id]

        return change_stream(request, store, household, resume_position(request.headers.get("last-event-id"),
                                                                        position or None), poll_interval, me)

    return router
