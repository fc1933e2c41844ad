"""The family's "tell it once" summary of a child (:mod:`hub.family.summary`).

* ``GET /v1/households/{hid}/children/{cid}/summary`` — the summary: the family (a parent, the young person
  themself) always; the household's coordinator only while the family shares it (else 404, as if none).
* ``PUT /v1/households/{hid}/children/{cid}/summary`` — a parent, or the young person themself, writes it
  (``needs``, ``communication``, ``involved``, each at most 2,000 characters) and chooses ``shared``.
  Audited (``summary_change``) in the write's transaction.
* ``GET /v1/agencies/{aid}/children/{cid}/summary`` — an agency in the team around the child, while the
  family shares it; any other agency, or an unshared summary, is 404. Audited as a read of the child's record.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from hub.core.errors import NotFoundError
from hub.family import summary
from hub.governance.audit import AuditLog
from hub.governance.auth import Principal
from hub.ingest.services import Services
from hub.sharing.agency_team import agency_team_view

AGENCY_ROUTE = "/v1/agencies/{agency_id}/children/{child_id}/summary"


class SummaryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    needs: str | None = Field(default=None, max_length=summary.MAX_CHARS)
    communication: str | None = Field(default=None, max_length=summary.MAX_CHARS)
    involved: str | None = Field(default=None, max_length=summary.MAX_CHARS)
    shared: bool = False


def may_read(principal: Principal | None, found: summary.Summary | None) -> bool:
    """The family reads its own summary; anyone else only a shared one (the route's rule admitted them)."""
    if found is None or principal is None:
        return False
    return found.shared or principal.role in ("parent", "young_person")


def summary_router(services: Services) -> APIRouter:
    router = APIRouter(tags=["family"])
    store, vault = services.store, services.vault
    audit = AuditLog(store)

    @router.get("/v1/households/{household_id}/children/{child_id}/summary")
    async def read_summary(request: Request, household_id: str, child_id: str) -> dict[str, Any]:
        """The family's summary of the child, as the caller may read it."""
        found = await asyncio.to_thread(summary.read, store, vault, household_id, child_id)
        if not may_read(getattr(request.state, "principal", None), found):
            raise NotFoundError("no summary of this child is shared with you")
        assert found is not None
        return found.as_dict()

    @router.put("/v1/households/{household_id}/children/{child_id}/summary")
    async def write_summary(request: Request, household_id: str, child_id: str, body: SummaryIn) -> dict[str, Any]:
        """Write the summary and choose whether the child's coordinator and team see it."""
        me: Principal = request.state.principal
        return await asyncio.to_thread(
            summary.write, store, vault, household_id, child_id, body.model_dump(exclude={"shared"}),
            shared=body.shared, actor=me.subject, role=me.role, source=request.client.host if request.client else None)

    @router.get(AGENCY_ROUTE)
    async def agency_summary(request: Request, agency_id: str, child_id: str) -> dict[str, Any]:
        """The family's summary of a child this agency works with, while the family shares it."""
        me: Principal = request.state.principal
        found = await asyncio.to_thread(agency_summary_of, services, agency_id, child_id)
        await asyncio.to_thread(
            audit.record, "read_timeline" if found is not None else "login_denied", actor=me.subject,
            actor_role=me.role, subject_household=found.household_id if found is not None else None,
            subject_child=child_id, data_ref=f"GET {AGENCY_ROUTE}",
            detail={"agency": agency_id} if found is not None else {"agency": agency_id, "refused": "NotFoundError"},
            source=request.client.host if request.client else None)
        if found is None:
            raise NotFoundError("no summary of this child is shared with you")
        return found.as_dict()

    return router


def agency_summary_of(services: Services, agency_id: str, child_id: str) -> summary.Summary | None:
    """The child's shared summary if ``agency_id`` is in the team around the child, else None."""
    view = agency_team_view(services.store, agency_id, child_id)
    if view is None:
        return None
    found = summary.read(services.store, services.vault, view.household_id, child_id)
    return found if found is not None and found.shared else None
