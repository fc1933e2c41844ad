"""Sharing routes: consent management, the agency inbox, family copies, share states and report readiness.

* ``POST /v1/households/{hid}/children/{cid}/consents`` — body: a FHIR R4 Consent resource (JSON)
  whose patient is ``Patient/<cid>``; accepted through the hub's ingest path (202).
* ``DELETE /v1/households/{hid}/children/{cid}/consents/{directive_id}`` — withdraw it (202).
* ``GET /v1/households/{hid}/children/{cid}/consents`` — the child's directives and their status
  (``active``, ``withdrawn``, ``invalid``, or ``pending_confirmation`` for one an agency recorded);
  a FHIR ``searchset`` Bundle of Consents when asked with ``Accept: application/fhir+json|xml`` or ``_format``.
* ``POST /v1/households/{hid}/children/{cid}/consents/{directive_id}/confirm`` — the family or their
  coordinator confirms a directive an agency recorded, so it comes into force (202; audited).
* ``GET /v1/households/{hid}/shares`` — per information and recipient: decision and delivery state.
* ``GET /v1/households/{hid}/family-copies`` — copies delivered into the family's own view.
* ``GET /v1/households/{hid}/readiness`` — before each appointment: visible / withheld / missing reports.
* ``GET /v1/households/{hid}/alerts`` — coordinator alerts and report requests not yet resolved, or those
  in one ``?state=open|acknowledged|resolved``.
* ``POST /v1/households/{hid}/alerts/{alert_id}/acknowledge`` — the coordinator has it in hand (audited).
* ``GET /v1/agencies/{agency_id}/inbox`` — an agency's shares (cursor pagination); reading delivers.
* ``POST /v1/agencies/{agency_id}/inbox/{delivery_id}/ack`` — acknowledge one.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from consent import Directive, Grantor
from hub.api.fhir_conformance import consent_bundle, fhir_answer, wants_fhir
from hub.core.errors import ForbiddenError, NotFoundError
from hub.core.limits import row_id
from hub.governance.audit import AuditEntry, AuditLog
from hub.ingest.services import Services
from hub.sharing import consents, delivery, readiness
from hub.sharing.alerts import State, acknowledge_alert, list_alerts
from hub.sharing.inbox import homes_of
from hub.sharing.read_summaries import alerts_for
from hub.sharing.visibility import ReadView, copies_for, readiness_for, shares_for
from hub.stream import readmodel


class ConsentChange(BaseModel):
    """A consent directive recorded, withdrawn or confirmed: durable once answered, applied by the worker."""

    directive_id: str
    event_id: str
    status: str = Field(description="accepted or duplicate")


def _check_grantor(request: Request, directive: Directive) -> None:
    """Nobody records a directive in another family member's name."""
    principal = getattr(request.state, "principal", None)
    role = getattr(principal, "role", None)
    young = directive.made_by_role is Grantor.YOUNG_PERSON
    if role == "parent" and young:
        raise ForbiddenError("a parent may not record a directive as the young person")
    if role == "young_person" and not young:
        raise ForbiddenError("a young person records directives in their own name")


def _actor(request: Request) -> consents.Actor:
    principal = getattr(request.state, "principal", None)
    return consents.Actor(str(getattr(principal, "subject", "anonymous")), str(getattr(principal, "role", "")))


def sharing_router(services: Services) -> APIRouter:
    router = APIRouter(tags=["sharing"])
    store = services.store

    async def known_child(household_id: str, child_id: str | None = None) -> None:
        kids = await asyncio.to_thread(readmodel.children, store, household_id)
        if not kids or (child_id is not None and child_id not in kids):
            raise NotFoundError("no such household or child")

    @router.post("/v1/households/{household_id}/children/{child_id}/consents", status_code=202,
                 response_model=ConsentChange)
    async def give_consent(household_id: str, child_id: str, request: Request,
                           resource: Annotated[dict[str, Any], Body(description="FHIR R4 Consent")]) -> JSONResponse:
        """Record a consent directive (FHIR R4 Consent). Durable once answered; applied by the worker.

        A parent records parents' directives and a young person their own (the Consent's performer
        says which); a coordinator may record either on the family's behalf."""
        _check_grantor(request, consents.parse(resource, child_id))
        directive, acc = await consents.grant(store, services.ingest, household_id, child_id, resource,
                                              actor=_actor(request))
        return JSONResponse({"directive_id": directive.id, "event_id": acc[-1].event_id, "status": acc[-1].status},
                            status_code=202)

    @router.delete("/v1/households/{household_id}/children/{child_id}/consents/{directive_id}", status_code=202,
                   response_model=ConsentChange)
    async def withdraw_consent(household_id: str, child_id: str, directive_id: str, request: Request,
                               reason: str | None = None) -> JSONResponse:
        """Withdraw a directive: undelivered shares are cancelled, holders of copies get a notice."""
        acc = await consents.withdraw(store, services.ingest, household_id, child_id, directive_id, reason,
                                      actor=_actor(request))
        return JSONResponse({"directive_id": directive_id, "event_id": acc[0].event_id, "status": acc[0].status},
                            status_code=202)

    @router.post("/v1/households/{household_id}/children/{child_id}/consents/{directive_id}/confirm",
                 status_code=202, response_model=ConsentChange)
    async def confirm_consent(household_id: str, child_id: str, directive_id: str, request: Request) -> JSONResponse:
        """Confirm a directive an agency recorded (``pending_confirmation``): it comes into force."""
        directive, fhir = await asyncio.to_thread(consents.pending_directive, store, household_id, child_id,
                                                  directive_id)
        _check_grantor(request, directive)
        del fhir  # the audit record, written with the confirmation, names the recording agency
        acc = await consents.confirm(store, services.ingest, household_id, child_id, directive_id,
                                     actor=_actor(request))
        return JSONResponse({"directive_id": directive_id, "event_id": acc[-1].event_id, "status": acc[-1].status},
                            status_code=202)

    @router.get("/v1/households/{household_id}/children/{child_id}/consents")
    async def child_consents(household_id: str, child_id: str, request: Request) -> Any:
        """The child's directives; as a FHIR searchset Bundle of Consents when FHIR is asked for
        (``Accept: application/fhir+json`` or ``+xml``, or ``_format``)."""
        await known_child(household_id, child_id)
        rows = await asyncio.to_thread(consents.list_directives, store, household_id, child_id)
        fmt = wants_fhir(request)
        if fmt is not None:
            return fhir_answer(consent_bundle(rows, str(request.url), str(request.base_url) + "fhir"), fmt)
        return {"child_id": child_id, "directives": rows}

    @router.get("/v1/households/{household_id}/shares")
    async def shares(household_id: str, request: Request, child_id: str | None = None) -> dict[str, Any]:
        """Per information and recipient: the decision and delivery state, for information the caller may see."""
        await known_child(household_id, child_id)
        rows = await asyncio.to_thread(delivery.recipient_states, store, household_id, child_id)
        view = await asyncio.to_thread(ReadView.load, store, getattr(request.state, "principal", None),
                                       [household_id])
        return {"household_id": household_id, "shares": await asyncio.to_thread(shares_for, view, store,
                                                                                 household_id, rows)}

    @router.get("/v1/households/{household_id}/family-copies")
    async def family_copies(household_id: str, request: Request) -> dict[str, Any]:
        """Copies delivered to the family, as the read policy lets the caller see them."""
        await known_child(household_id)
        rows = await asyncio.to_thread(delivery.family_copies, store, household_id)
        view = await asyncio.to_thread(ReadView.load, store, getattr(request.state, "principal", None),
                                       [household_id])
        return {"household_id": household_id, "copies": copies_for(view, household_id, rows)}

    @router.get("/v1/households/{household_id}/readiness")
    async def report_readiness(household_id: str, request: Request,
                               report_days: Annotated[int, Query(ge=1, le=365)] = 28,
                               warn_days: Annotated[int, Query(ge=0, le=90)] = 7) -> dict[str, Any]:
        await known_child(household_id)
        result = await asyncio.to_thread(readiness.readiness, store, household_id, datetime.now(UTC),
                                         report_days=report_days, warn_days=warn_days)
        view = await asyncio.to_thread(ReadView.load, store, getattr(request.state, "principal", None),
                                       [household_id])
        return await asyncio.to_thread(readiness_for, view, store, household_id, result)

    @router.get("/v1/households/{household_id}/alerts")
    async def household_alerts(household_id: str, request: Request, state: State | None = None) -> dict[str, Any]:
        """Alerts not yet resolved (open or acknowledged), or those in ``state``, as the read policy lets the
        caller read them: none about an entry hidden from them, titles withheld where the entry is redacted."""
        await known_child(household_id)
        rows = await asyncio.to_thread(list_alerts, store, household_id=household_id, state=state)
        view = await asyncio.to_thread(ReadView.load, store, getattr(request.state, "principal", None),
                                       [household_id])
        return {"household_id": household_id, "alerts": await asyncio.to_thread(alerts_for, view, store,
                                                                                 household_id, rows)}

    @router.post("/v1/households/{household_id}/alerts/{alert_id}/acknowledge")
    async def acknowledge_household_alert(household_id: str, alert_id: str, request: Request) -> dict[str, Any]:
        """Acknowledge an open alert (audited); one already acknowledged or resolved is returned as it is.
        It is resolved by the hub when its condition clears."""
        number = row_id(alert_id)  # ASCII digits in range: "²" or 30 nines are no alert, not a 500
        if number is None:
            raise NotFoundError("no such alert for this household")
        principal = getattr(request.state, "principal", None)
        return await asyncio.to_thread(acknowledge_alert, store, household_id, number,
                                       actor=getattr(principal, "subject", "anonymous"),
                                       actor_role=getattr(principal, "role", ""))

    def _audit_inbox_read(request: Request, agency_id: str, ids: list[str]) -> None:
        principal = getattr(request.state, "principal", None)
        actor, role = getattr(principal, "subject", "anonymous"), getattr(principal, "role", "")
        homes = homes_of(store, ids) if ids else {}
        AuditLog(store).record_many([AuditEntry(
            "read_report", actor=actor, actor_role=role, subject_household=hh,
            subject_child=child, data_ref="GET /v1/agencies/{agency_id}/inbox", purpose="direct_care",
            detail={"agency": agency_id, "deliveries": dids},
            source=request.client.host if request.client else None)
            for (hh, child), dids in sorted(homes.items())] or [AuditEntry(
            "read_report", actor=actor, actor_role=role,
            data_ref="GET /v1/agencies/{agency_id}/inbox", detail={"agency": agency_id, "deliveries": []})])

    @router.get("/v1/agencies/{agency_id}/inbox")
    async def agency_inbox(agency_id: str, request: Request, cursor: str | None = None,
                           limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
        """The agency's shares and withdrawal notices, oldest first; ``next_cursor`` fetches more.

        The read is audited once per household it shows (so each family's transparency view has it)."""
        items, nxt = await asyncio.to_thread(delivery.inbox, store, agency_id, cursor=cursor, limit=limit)
        await asyncio.to_thread(_audit_inbox_read, request, agency_id, [i["delivery_id"] for i in items])
        return {"agency_id": agency_id, "items": items, "next_cursor": nxt}

    @router.post("/v1/agencies/{agency_id}/inbox/{delivery_id}/ack")
    async def agency_ack(agency_id: str, delivery_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(delivery.acknowledge, store, agency_id, delivery_id)

    return router
