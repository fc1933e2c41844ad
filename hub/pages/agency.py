"""The agency's pages: its inbox of shared reports and notices, each with an acknowledge button. Reading the
inbox delivers what waited in it and is audited once per household shown, as the inbox route does."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from hub.core.errors import NotFoundError
from hub.governance.audit import AuditEntry, AuditLog
from hub.governance.auth import Principal
from hub.ingest.services import Services
from hub.pages import gather
from hub.pages.access import PageGate
from hub.pages.render import page
from hub.pages.session import check_csrf, require
from hub.sharing import delivery
from hub.sharing.agency_team import agency_team_view
from hub.sharing.inbox import homes_of

INBOX = ("GET", "/v1/agencies/{agency_id}/inbox")
ACK = ("POST", "/v1/agencies/{agency_id}/inbox/{delivery_id}/ack")
TEAM = ("GET", "/v1/agencies/{agency_id}/children/{child_id}/team")
SUMMARY = ("GET", "/v1/agencies/{agency_id}/children/{child_id}/summary")


def agency_pages(services: Services, gate: PageGate) -> APIRouter:
    router = APIRouter(tags=["pages"], include_in_schema=False)
    store = services.store
    audit = AuditLog(store)

    def record_read(request: Request, me: Principal, agency_id: str, ids: list[str]) -> None:
        """One ``read_report`` record per household whose shares the page showed (the family sees it)."""
        homes = homes_of(store, ids) if ids else {}
        ref = f"{INBOX[0]} {INBOX[1]} (page /inbox)"
        audit.record_many([AuditEntry(
            "read_report", actor=me.subject, actor_role=me.role, subject_household=hh, subject_child=child,
            data_ref=ref, purpose="direct_care", detail={"agency": agency_id, "deliveries": dids},
            source=request.client.host if request.client else None)
            for (hh, child), dids in sorted(homes.items())] or [AuditEntry(
            "read_report", actor=me.subject, actor_role=me.role, data_ref=ref,
            detail={"agency": agency_id, "deliveries": []})])

    @router.get("/inbox")
    async def inbox(request: Request) -> Response:
        agency_id = require(request).agency or ""
        me = await gate.enter(request, INBOX, agency_id=agency_id)
        items, _ = await asyncio.to_thread(delivery.inbox, store, agency_id, limit=200)
        await asyncio.to_thread(record_read, request, me, agency_id, [i["delivery_id"] for i in items])
        return page(request, "inbox.html", items=list(reversed(items)), agency_id=agency_id)

    @router.post("/inbox/{delivery_id}/ack")
    async def acknowledge(request: Request, delivery_id: str, csrf: Annotated[str | None, Form()] = None) -> Response:
        check_csrf(request, csrf)
        agency_id = require(request).agency or ""
        await gate.enter(request, ACK, agency_id=agency_id)
        await asyncio.to_thread(delivery.acknowledge, store, agency_id, delivery_id)
        return RedirectResponse("/inbox?acknowledged=1", status_code=303)

    @router.get("/inbox/sent")
    async def sent(request: Request) -> Response:
        """The status of what the agency sent the hub: published, waiting, or refused for good."""
        await gate.enter(request)
        agency_id = require(request).agency or ""
        sent = await asyncio.to_thread(gather.sent_by, store, agency_id)
        return page(request, "agency_sent.html", sent=sent, agency_id=agency_id)

    @router.get("/inbox/children/{child_id}/team")
    async def team(request: Request, child_id: str) -> Response:
        """Who else is in the team around a child this agency works with (services, named professionals);
        nothing clinical. A child outside the agency's teams answers 404, as on the API, and is audited."""
        agency_id = require(request).agency or ""
        me = await gate.enter(request, TEAM, agency_id=agency_id, child_id=child_id)
        view = await asyncio.to_thread(agency_team_view, store, agency_id, child_id)
        await asyncio.to_thread(
            audit.record, "read_timeline" if view is not None else "login_denied", actor=me.subject,
            actor_role=me.role, subject_household=view.household_id if view is not None else None,
            subject_child=child_id, data_ref=f"{TEAM[0]} {TEAM[1]} (page /inbox/children/{{child_id}}/team)",
            detail={"agency": agency_id} if view is not None else {"agency": agency_id, "refused": "NotFoundError"},
            source=request.client.host if request.client else None)
        if view is None:
            raise NotFoundError("no such child in this agency's teams")
        found = None
        if await gate.allowed(me, SUMMARY, agency_id=agency_id, child_id=child_id):
            found = (await asyncio.to_thread(gather.shared_summaries, store, services.vault, view.household_id,
                                             [child_id])).get(child_id)
        return page(request, "agency_team.html", child_id=child_id, team=view.team, summary=found)

    return router
