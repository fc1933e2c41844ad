"""Enrolment and caseload routes: households, members, identifier links, a coordinator's caseload and
its live stream. Identifier values travel only in request bodies (never URLs, which get logged)."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Request
from pydantic import BaseModel, Field
from sse_starlette.sse import EventSourceResponse

from hub.api.streams import change_stream, resume_position
from hub.family.enrolment import Enrolment, Move
from hub.ingest.services import Services
from hub.sharing.alerts import raise_alert
from hub.sharing.processor import redecide_child
from hub.sharing.read_summaries import visible_counts
from hub.sharing.visibility import ReadView
from hub.stream import readmodel


class HouseholdIn(BaseModel):
    coordinator_id: str = Field(min_length=1, max_length=120)


class MemberIn(BaseModel):
    kind: Literal["child", "adult"]
    relationship: str = Field(min_length=1, max_length=40, examples=["child", "mother", "father", "carer"])
    parental_responsibility: bool = False
    date_of_birth: date | None = None
    competent_from: date | None = Field(
        default=None, description="A child under 16 recorded as competent (Gillick) to make their own consent "
                                  "decisions from this date.")


class IdentifierIn(BaseModel):
    system: Literal["nhs-number", "upn", "la-person-id", "hub-child-id", "other"]
    value: str = Field(min_length=1, max_length=64)
    reason: str | None = Field(default=None, max_length=200)
    by: str = Field(default="coordinator", max_length=120, description="Ignored when a token names the caller.")


def actor(request: Request, fallback: str) -> str:
    """Who is acting: the authenticated caller, never a name taken from the request body."""
    principal = getattr(request.state, "principal", None)
    return str(getattr(principal, "subject", None) or fallback)


def role_of(request: Request) -> str:
    principal = getattr(request.state, "principal", None)
    return str(getattr(principal, "role", None) or "coordinator")


def alert_move(conn: Any, move: Move) -> None:
    """Tell both households' coordinators that an identifier moved (hub ids only, never the identifier)."""
    now = datetime.now(UTC)
    details = {"from_household": move.from_household, "from_child": move.from_child,
               "to_household": move.to_household, "to_child": move.to_child, "by": move.by}
    for household, child, message in (
            (move.from_household, move.from_child,
             f"An identifier linked to child {move.from_child} was moved to child {move.to_child} of household "
             f"{move.to_household}; the events it brought have left this child's record."),
            (move.to_household, move.to_child,
             f"An identifier was moved to child {move.to_child} from child {move.from_child} of household "
             f"{move.from_household}; check the link is right.")):
        raise_alert(conn, key=f"identity_move:{household}:{child}:{now.isoformat()}", kind="identity_moved",
                    household_id=household, child_id=child, to_agency_id=None, to_service=None, message=message,
                    details=details, now=now)


class CorporateParentIn(BaseModel):
    agency_id: str | None = Field(min_length=1, max_length=120, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                                  description="The local authority's agency id; null clears it.",
                                  examples=["W06000022"])


class AssignIn(BaseModel):
    household_id: str = Field(min_length=1, max_length=80)


def enrolment_router(services: Services, *, poll_interval: float = 0.1) -> APIRouter:
    router = APIRouter(tags=["enrolment"])
    enrol = Enrolment(services.store, services.ingest, services.vault)
    store = services.store

    @router.post("/v1/households", status_code=201)
    async def create_household(body: HouseholdIn, request: Request) -> dict[str, str]:
        """Create a household on the coordinator's caseload (a coordinator: their own only; 403 otherwise)."""
        principal = getattr(request.state, "principal", None)
        by = str(principal.subject) if principal is not None else None
        return {"household_id": await asyncio.to_thread(enrol.create_household, body.coordinator_id, by=by,
                                                        role=role_of(request))}

    @router.get("/v1/households/{household_id}/members")
    async def members(household_id: str) -> list[dict[str, Any]]:
        return [asdict(m) for m in await asyncio.to_thread(enrol.household, household_id)]

    @router.post("/v1/households/{household_id}/members", status_code=201)
    async def add_member(household_id: str, body: MemberIn) -> dict[str, Any]:
        member = await asyncio.to_thread(enrol.add_member, household_id, body.kind, body.relationship,
                                         body.parental_responsibility, body.date_of_birth, body.competent_from)
        return asdict(member)

    @router.post("/v1/households/{household_id}/members/{member_id}/identifiers", status_code=202)
    async def link(household_id: str, member_id: str, body: IdentifierIn, request: Request) -> dict[str, Any]:
        """Link an agency identifier: its events (including parked ones) join this family's timeline.

        An identifier linked to a child in another household is refused (409) unless the caller coordinates
        both households or is an IG officer or admin: then it moves, audited, and both coordinators are alerted."""
        acc = await enrol.link(household_id, member_id, body.system, body.value, by=actor(request, body.by),
                               reason=body.reason, role=role_of(request), on_move=alert_move)
        return {"event_id": acc.event_id, "version": acc.source_version, "status": acc.status}

    @router.post("/v1/households/{household_id}/members/{member_id}/identifiers/unlink", status_code=202)
    async def unlink(household_id: str, member_id: str, body: IdentifierIn, request: Request) -> dict[str, Any]:
        """Undo a wrong link: the events it brought leave this family's timeline, and what was shared from
        them is recalled (a ``recall`` notice to each recipient; the family copy is withdrawn)."""
        acc = await enrol.link(household_id, member_id, body.system, body.value, by=actor(request, body.by),
                               action="unlink", reason=body.reason, role=role_of(request))
        return {"event_id": acc.event_id, "version": acc.source_version, "status": acc.status}

    @router.put("/v1/households/{household_id}/members/{member_id}/corporate-parent")
    async def corporate_parent(household_id: str, member_id: str, body: CorporateParentIn,
                               request: Request) -> dict[str, Any]:
        """Record a looked-after child's local authority as corporate parent (a consent actor); null clears it.
        The household's coordinator or an IG officer; audited; the child's sharing decisions are taken again."""
        out = await asyncio.to_thread(enrol.set_corporate_parent, household_id, member_id, body.agency_id,
                                      by=actor(request, "coordinator"), role=role_of(request),
                                      source=request.client.host if request.client else None)
        if out["status"] != "unchanged":
            await asyncio.to_thread(redecide_child, store, household_id, member_id, trigger="corporate_parent")
        return out

    @router.post("/v1/coordinators/{coordinator_id}/caseload", status_code=204)
    async def assign(coordinator_id: str, body: AssignIn, request: Request) -> None:
        """Put a household on a coordinator's caseload."""
        await asyncio.to_thread(enrol.assign, coordinator_id, body.household_id, by=actor(request, "admin"))

    @router.get("/v1/coordinators/{coordinator_id}/caseload", tags=["timeline"])
    async def caseload(coordinator_id: str, request: Request) -> dict[str, Any]:
        """The coordinator's families: children, entries, and appointments still ahead, counted as the read
        policy lets the caller see them (a count never tells what the timeline hides)."""
        ids = await asyncio.to_thread(enrol.caseload, coordinator_id)
        view = await asyncio.to_thread(ReadView.load, store, getattr(request.state, "principal", None), ids)
        counts = await asyncio.to_thread(visible_counts, view, store, ids)
        now = datetime.now(UTC)
        out = []
        for hh in ids:
            upcoming = await asyncio.to_thread(readmodel.upcoming_appointments, store, hh, now,
                                               view.records_view(hh))
            out.append({"household_id": hh,
                        "children": counts.get(hh, {}),
                        "upcoming_appointments": sum(len(v) for v in upcoming.values()),
                        "next_appointment": min((a.start for v in upcoming.values() for a in v), default=None)})
        return {"coordinator_id": coordinator_id, "households": out}

    @router.get("/v1/coordinators/{coordinator_id}/stream", tags=["timeline"])
    async def caseload_stream(
        request: Request, coordinator_id: str,
        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    ) -> EventSourceResponse:
        """New and changed entries across the coordinator's caseload (SSE, resumable by Last-Event-ID)."""
        async def caseload() -> list[str]:
            return list(await asyncio.to_thread(enrol.caseload, coordinator_id))

        return change_stream(request, store, caseload, resume_position(last_event_id), poll_interval,
                             getattr(request.state, "principal", None))

    return router
