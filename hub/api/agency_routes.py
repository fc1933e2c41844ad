"""Agency read routes beyond the inbox: the minimum view of the team around a child.

* ``GET /v1/agencies/{agency_id}/children/{child_id}/team`` — for an agency currently in the team
  around the child (the child as inbox items name it, ``content.child_id``): the other services and
  named professionals, and nothing clinical (:mod:`hub.agency_team`). Any other agency, and any
  child that does not exist, gets the same 404.

The guard checks the token's agency against the path; this route checks team membership, and audits
the read against the child's household (so the family's transparency view shows it) or the refusal.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request

from hub.core.errors import NotFoundError
from hub.governance.audit import AuditLog
from hub.ingest.services import Services
from hub.sharing.agency_team import agency_team_view

TEAM_ROUTE = "/v1/agencies/{agency_id}/children/{child_id}/team"


def agency_router(services: Services) -> APIRouter:
    router = APIRouter(tags=["sharing"])
    store = services.store
    audit = AuditLog(store)

    @router.get(TEAM_ROUTE)
    async def agency_child_team(request: Request, agency_id: str, child_id: str) -> dict[str, Any]:
        """Who else is in the team around a child this agency works with: services, agencies and named
        professionals; no entries, reports, diagnoses or anything from a restricted category."""
        view = await asyncio.to_thread(agency_team_view, store, agency_id, child_id)
        principal = getattr(request.state, "principal", None)
        await asyncio.to_thread(
            audit.record, "read_timeline" if view is not None else "login_denied",
            actor=getattr(principal, "subject", "anonymous"), actor_role=getattr(principal, "role", ""),
            subject_household=view.household_id if view is not None else None, subject_child=child_id,
            data_ref=f"GET {TEAM_ROUTE}", purpose=request.headers.get("x-purpose"),
            detail={"agency": agency_id} if view is not None else {"agency": agency_id, "refused": "NotFoundError"},
            source=request.client.host if request.client else None)
        if view is None:
            raise NotFoundError("no such child in this agency's teams")
        return {"agency_id": agency_id, "child_id": child_id, "team": [asdict(m) for m in view.team]}

    return router
