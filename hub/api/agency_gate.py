"""Which agency a request comes from, and the binding its events pass (:mod:`hub.governance.agency_binding`).

* An agency token's agency is its ``agency`` claim, else its subject; the registry
  (``HUB_AGENCIES_FILE``, :mod:`hub.governance.agencies`) gives its registration, or a 403 problem
  when it is not registered or not registered for the route's sector (audited as ``ingest_refused``).
* An admin on ``POST /v1/events`` is bound as the pseudo-agency ``admin``: its events are recorded
  under ``admin/<source system>`` and it cannot create hub-internal records either.
* ``GET /v1/agencies`` (admin): the registry as configured.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request

from connectors.sectors import SECTORS
from hub.core.errors import ForbiddenError
from hub.governance.agencies import AgencyRegistry, Registration
from hub.governance.agency_binding import AgencyBinding
from hub.governance.audit import AuditLog

ADMIN = "admin"


class AgencyGate:
    def __init__(self, registry: AgencyRegistry, audit: AuditLog) -> None:
        self.registry = registry
        self.audit = audit

    def binding(self, request: Request, route: str, sector: str | None = None) -> AgencyBinding:
        """The binding for this request's agency; 403 (audited) for an agency not registered for ``sector``."""
        principal = getattr(request.state, "principal", None)
        subject = getattr(principal, "subject", "anonymous")
        if getattr(principal, "role", None) == ADMIN:
            reg = Registration(ADMIN, ADMIN, frozenset(SECTORS), (subject,), None, registered=False)
            return AgencyBinding(reg, self.audit, subject, route)
        agency = getattr(principal, "agency", None) or subject
        try:
            reg = self.registry.registration(agency, subject)
        except ForbiddenError:
            self._refused(subject, agency, route, "unregistered")
            raise
        if sector is not None and sector not in reg.sectors:
            self._refused(subject, agency, route, "sector")
            raise ForbiddenError(f"agency {agency} is not registered for the {sector.replace('_', '-')} sector; "
                                 "ask an administrator to add it in HUB_AGENCIES_FILE")
        return AgencyBinding(reg, self.audit, subject, route)

    def _refused(self, subject: str, agency: str, route: str, rule: str) -> None:
        self.audit.record("ingest_refused", actor=subject, actor_role="agency", data_ref=f"POST {route}",
                          detail={"agency": agency, "rule": rule})


def agencies_router(registry: AgencyRegistry) -> APIRouter:
    router = APIRouter(tags=["admin"])

    @router.get("/v1/agencies")
    async def list_agencies() -> dict[str, Any]:
        """The agency registry (``HUB_AGENCIES_FILE``): ids, names, sectors, source systems, mappings,
        organisations and consent recording; ``configured`` false when every token agency is registered."""
        return await asyncio.to_thread(registry.listing)

    return router
