"""Information-governance actions: erasure of one person (role ``ig_officer``; hub/governance/auth.py POLICY).

``POST /v1/erasures`` takes the person — ``member`` (household and member id) or ``identifier``
(system and value; pseudonymised at once, never stored, logged or echoed) — and a written
``reason``. It answers 201 with what was erased, or 200 when the person was already erased (nothing
changed). The erasure itself is :class:`hub.erasure.Erasure`; the caller is the audit record's actor.

``GET /v1/agencies/{agency_id}/returns/sen2?year=YYYY&lea=NNN`` (IG officer or admin) answers the local
authority's SEN2 return for that collection year as the DfE's XML (:mod:`hub.governance.sen2_return`),
checked against the field definitions first: a return that would not meet them is a 422 problem
naming the items, never a file. ``lea`` is the authority's 3-digit DfE number; anything else, and an
authority outside England (SEN2 is an England return), is a 422 naming it. A call is audited as an
``export`` only when the file is answered.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from hub.api.returns_routes import LEA_HELP, audit_export, return_file
from hub.core.errors import Problem, ValidationError
from hub.core.events import SubjectRef
from hub.governance.audit import AuditLog
from hub.governance.erasure import Erasure, ErasureResult, MemberRef
from hub.governance.sen2 import SPECIFICATION, check
from hub.governance.sen2_return import build_return
from hub.ingest.services import Services


class MemberIn(BaseModel):
    household_id: str = Field(min_length=1, max_length=80)
    member_id: str = Field(min_length=1, max_length=80)


class IdentifierIn(BaseModel):
    system: Literal["nhs-number", "upn", "la-person-id", "hub-child-id", "other"]
    value: str = Field(min_length=1, max_length=64)


class ErasureIn(BaseModel):
    """Whom to erase (exactly one of ``member`` and ``identifier``) and why."""

    member: MemberIn | None = None
    identifier: IdentifierIn | None = None
    reason: str | None = Field(default=None, description="Why: the request's reference, not the person.")


class ErasureOut(BaseModel):
    erasure_id: str
    status: Literal["erased", "already_erased"]
    kind: Literal["member", "subject"]
    household_id: str | None
    member_id: str | None
    pseudonyms: int
    keys_shredded: int
    removed: dict[str, int]
    audit_seq: int | None


def _out(r: ErasureResult) -> ErasureOut:
    return ErasureOut(erasure_id=r.erasure_id, status=r.status, kind=r.kind, household_id=r.household_id,
                      member_id=r.member_id, pseudonyms=len(r.subjects), keys_shredded=r.keys_shredded,
                      removed=r.removed, audit_seq=r.audit_seq)


SEN2_ROUTE = "/v1/agencies/{agency_id}/returns/sen2"


def governance_router(services: Services) -> APIRouter:
    router = APIRouter(tags=["information governance"])
    erasure = Erasure(services.store, services.vault, services.pseudonymise)
    audit = AuditLog(services.store)

    @router.post("/v1/erasures", status_code=201, response_model=ErasureOut,
                 responses={200: {"description": "Already erased: nothing changed", "model": ErasureOut},
                            404: {"description": "No such member, or no data held for the identifier"},
                            422: {"description": "No person, both kinds, or no written reason"}})
    async def erase(body: ErasureIn, request: Request, response: Response) -> ErasureOut:
        """Erase one person: shred their data keys, remove them from every projection, audit it."""
        target: MemberRef | SubjectRef
        if (body.member is None) == (body.identifier is None):
            raise ValidationError(Problem("/", "give exactly one of member and identifier"), title="Erasure refused")
        if body.member is not None:
            target = MemberRef(body.member.household_id, body.member.member_id)
        else:
            assert body.identifier is not None
            target = SubjectRef(body.identifier.system, body.identifier.value)
        principal = request.state.principal
        result = await asyncio.to_thread(erasure.erase, target, reason=body.reason, actor=principal.subject,
                                         actor_role=principal.role,
                                         source=request.client.host if request.client else None)
        if result.status == "already_erased":
            response.status_code = 200
        return _out(result)

    @router.get(SEN2_ROUTE, response_class=Response,
                responses={200: {"content": {"application/xml": {"schema": {"type": "string", "format": "binary"}}},
                                 "description": "The SEN2 return"},
                           422: {"description": "The return would not meet the DfE field definitions"}})
    async def sen2_return(request: Request, agency_id: str, year: int = Query(ge=2020, le=2100),
                          lea: str | None = Query(None, description=LEA_HELP)) -> Response:
        """The local authority's SEN2 return for a collection year, in the DfE's XML layout."""
        xml, count = await asyncio.to_thread(build_return, services.store, agency_id, year, lea=lea)
        answer = return_file(xml, check(xml).problems, SPECIFICATION, f"sen2-{year}", agency_id)
        await audit_export(audit, request, SEN2_ROUTE, {"return": "SEN2", "year": year, "lea": lea, "persons": count})
        return answer

    return router
