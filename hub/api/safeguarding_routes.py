"""Safeguarding routes: lifting a disclosure hold, and making a safeguarding override.

* ``POST /v1/households/{hid}/children/{cid}/holds/{event_id}/release`` — body ``{"reason": "…"}``; the
  agency that sent the entry (role ``agency``) or an IG officer. Another agency's entry answers 404;
  every other role 403. The reason is sealed in the ``release`` audit record; the child's sharing
  decisions are taken again at once (:func:`hub.sharing.safeguarding.release_hold`).
* ``POST /v1/households/{hid}/children/{cid}/overrides`` — a safeguarding lead or an IG officer; body:
  recipient agency (and service), optional categories and records, ``ends_at`` (within 90 days), a written
  justification (sealed), ``tell_family`` (false needs ``risk_reason``, sealed for IG)
  (:func:`hub.sharing.safeguarding.make_override`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from pydantic import AwareDatetime, BaseModel, Field

from hub.ingest.services import Services
from hub.sharing.safeguarding import Caller, OverrideRequest, make_override, release_hold


class ReleaseIn(BaseModel):
    reason: str = Field(min_length=1, max_length=2000, description="Why the hold ends (sealed in the audit).")


class OverrideIn(BaseModel):
    recipient_agency_id: str = Field(min_length=1, max_length=120)
    recipient_service: str | None = Field(default=None, max_length=200,
                                          description="The service's name as the team view lists it.")
    categories: list[str] | None = Field(default=None, max_length=8)
    records: list[str] | None = Field(default=None, max_length=200, description="Entry (event) ids.")
    ends_at: AwareDatetime
    justification: str = Field(min_length=1, max_length=4000)
    tell_family: bool = True
    risk_reason: str | None = Field(default=None, max_length=2000)


def _caller(request: Request) -> Caller:
    p = request.state.principal
    return Caller(p.subject, p.role, p.agency, request.client.host if request.client else None)


def safeguarding_router(services: Services) -> APIRouter:
    router = APIRouter(tags=["safeguarding"])
    store, vault = services.store, services.vault

    @router.post("/v1/households/{household_id}/children/{child_id}/holds/{event_id}/release")
    async def release(household_id: str, child_id: str, event_id: str, body: ReleaseIn,
                      request: Request) -> dict[str, Any]:
        """Release an entry's disclosure hold: the family's copy and permitted shares follow."""
        return await asyncio.to_thread(release_hold, store, vault, household_id, child_id, event_id,
                                       caller=_caller(request), reason=body.reason)

    @router.post("/v1/households/{household_id}/children/{child_id}/overrides", status_code=201)
    async def override(household_id: str, child_id: str, body: OverrideIn, request: Request) -> dict[str, Any]:
        """Make a time-limited safeguarding override: shared without consent, reviewed by IG."""
        req = OverrideRequest(
            recipient_agency_id=body.recipient_agency_id, justification=body.justification, ends_at=body.ends_at,
            recipient_service=body.recipient_service,
            categories=tuple(body.categories) if body.categories else None,
            information_ids=tuple(body.records) if body.records else None,
            tell_family=body.tell_family, risk_reason=body.risk_reason)
        return await asyncio.to_thread(make_override, store, vault, household_id, child_id, req,
                                       caller=_caller(request))

    return router
