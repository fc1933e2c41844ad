"""The gate of every page: who is signed in, the page's own policy row, and the row of each API route
whose data the page shows, decided by the same :func:`hub.governance.auth.authorise` the API's guard calls
and audited the same way (the API route's audit action, with the page named in ``data_ref``)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from starlette.requests import Request

from hub.api.refusals import known_ids
from hub.core.errors import AuthError, ForbiddenError, NotFoundError
from hub.core.logging import get_logger
from hub.family.enrolment import Enrolment
from hub.governance.audit import AuditEntry, AuditLog
from hub.governance.audit_seal import reason_subject, seal_text
from hub.governance.auth import Principal, Rule, authorise
from hub.ingest.services import Services
from hub.pages.session import require

log = get_logger(__name__)
Source = tuple[str, str]  # (method, API path template)


class PageGate:
    def __init__(self, services: Services) -> None:
        self.store = services.store
        self.enrolment = Enrolment(services.store, services.ingest, services.vault)
        self.audit = AuditLog(services.store)
        self.vault = services.vault

    async def on_caseload(self, coordinator: str, household: str) -> bool:
        return household in await asyncio.to_thread(self.enrolment.caseload, coordinator)

    def caseload(self, coordinator: str) -> list[str]:
        return self.enrolment.caseload(coordinator)

    async def enter(self, request: Request, *sources: Source, reason: str | None = None, **params: str) -> Principal:
        """The signed-in reader, if the page's rule and every source's rule admit them for ``params`` (the
        page's path parameters and those the sources need); else 401, 403 or 404 as the API answers. An IG
        officer's ``reason`` (asked for by the page) opens clinical content, and is sealed in the audit."""
        route = request.scope.get("route")
        template = str(getattr(route, "path", request.url.path))
        principal = require(request)
        if reason and principal.role == "ig_officer":
            principal = dataclasses.replace(principal, reason=reason[:500])
        values = {**{k: str(v) for k, v in request.path_params.items()}, **params}
        try:
            await authorise(principal, request.method, template, values, self.on_caseload)
            rules = [(s, await authorise(principal, s[0], s[1], values, self.on_caseload)) for s in sources]
        except (AuthError, ForbiddenError, NotFoundError) as exc:
            await asyncio.to_thread(self._trace, "login_denied", principal, request, f"page {template}", values,
                                    {"refused": type(exc).__name__})
            raise
        reads = [(rule.audit, f"{method} {path} (page {template})") for (method, path), rule in rules if rule.audit]
        if reads:  # one transaction (one commit) for the page's records, in the order of its sources
            await asyncio.to_thread(self._trace_many, reads, principal, request, values, {})
        return principal

    async def allowed(self, principal: Principal, source: Source, **params: str) -> Rule | None:
        """The rule of ``source`` if it admits ``principal`` for ``params``, else None (no audit: for links)."""
        try:
            return await authorise(principal, source[0], source[1], params, self.on_caseload)
        except (AuthError, ForbiddenError, NotFoundError):
            return None

    def _trace(self, action: str, principal: Principal, request: Request, data_ref: str, params: dict[str, str],
               detail: dict[str, Any]) -> None:
        self._trace_many([(action, data_ref)], principal, request, params, detail)

    def _trace_many(self, reads: list[tuple[str, str]], principal: Principal, request: Request,
                    params: dict[str, str], detail: dict[str, Any]) -> None:
        household, child = known_ids(self.store, params.get("household_id"), params.get("child_id"))
        if principal.reason:
            detail = {**detail, "reason": seal_text(self.vault, reason_subject(household, principal.subject),
                                                    principal.reason)}
        self.audit.record_many([AuditEntry(
            action, actor=principal.subject, actor_role=principal.role, subject_household=household,
            subject_child=child, data_ref=data_ref, detail=detail,
            purpose="investigation" if principal.reason else None,
            source=request.client.host if request.client else None) for action, data_ref in reads])
