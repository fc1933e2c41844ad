"""``GET /v1/agencies/{agency_id}/returns/cin?year=YYYY&lea=NNN``: a local authority's children in need census return.

For an IG officer, or the authority's own system: an agency token whose agency is ``agency_id`` and is
registered for the social-care sector (``HUB_AGENCIES_FILE``); another authority's token answers 404 (as
for every agency route), a health or education agency's 403. The return is the DfE's XML
(:mod:`hub.governance.cin_return`), checked against the CIN census field definitions first: a return
that would not meet them is a 422 problem naming the items, never a file. ``lea`` is the authority's
3-digit DfE local-authority number, written in the return's header; anything else, and an authority
outside England, is a 422 naming it (:mod:`hub.governance.dfe_la`). A call is audited as an ``export``
only when a return file is answered: a refused call, or one answered 422, exported nothing.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Query, Request, Response

from hub.core.errors import ForbiddenError, Problem, ValidationError
from hub.governance.agencies import AgencyRegistry
from hub.governance.audit import AuditLog
from hub.governance.cin import SPECIFICATION, check
from hub.governance.cin_return import build_return
from hub.ingest.services import Services

SOCIAL_CARE = "social_care"
ROUTE = "/v1/agencies/{agency_id}/returns/cin"


def returns_router(services: Services, registry: AgencyRegistry) -> APIRouter:
    router = APIRouter(tags=["information governance"])
    audit = AuditLog(services.store)

    @router.get(ROUTE, response_class=Response,
                responses={200: {"content": {"application/xml": {"schema": {"type": "string", "format": "binary"}}},
                                 "description": "The children in need census return"},
                           403: {"description": "An agency that is not a local authority's social-care system"},
                           422: {"description": "The return would not meet the DfE field definitions"}})
    async def cin_return(request: Request, agency_id: str, year: int = Query(ge=2020, le=2100),
                         lea: str | None = Query(None, description=LEA_HELP)) -> Response:
        """The local authority's children in need census return for a collection year, in the DfE's XML layout."""
        principal = request.state.principal
        if principal.role == "agency":
            reg = registry.registration(agency_id, principal.subject)
            if SOCIAL_CARE not in reg.sectors:
                raise ForbiddenError(f"agency {agency_id} is not registered for the social-care sector; "
                                     "the CIN census is a local authority's return")
        xml, count = await asyncio.to_thread(build_return, services.store, agency_id, year, lea=lea)
        answer = return_file(xml, check(xml).problems, SPECIFICATION, f"cin-{year}", agency_id)
        await audit_export(audit, request, ROUTE, {"return": "CIN", "year": year, "lea": lea, "children": count})
        return answer

    return router


LEA_HELP = "The authority's 3-digit DfE local-authority number (England), written as the return's LEA."


async def audit_export(audit: AuditLog, request: Request, route: str, detail: dict[str, object]) -> None:
    """Audit a return that is being answered as an ``export`` (called only once the file is made)."""
    principal = request.state.principal
    await asyncio.to_thread(
        audit.record, "export", actor=principal.subject, actor_role=principal.role, data_ref=f"GET {route}",
        purpose="statutory_return", detail=detail, source=request.client.host if request.client else None)


def return_file(xml: bytes, problems: list[str], specification: str, stem: str, agency_id: str) -> Response:
    """A DfE return as an XML attachment named ``<stem>-<agency>.xml``; 422 with each problem where the
    return would not meet its specification's field definitions."""
    if problems:
        raise ValidationError([Problem("/", p) for p in problems],
                              title=f"The return does not meet the {specification}")
    name = "".join(c for c in agency_id if c.isalnum() or c in "-_")
    return Response(xml, media_type="application/xml",
                    headers={"Content-Disposition": f'attachment; filename="{stem}-{name}.xml"'})
