"""The information governance officer's pages: the audit chain verified on request, what was withheld,
safeguarding overrides, exports; for one household who has seen its record and its consent history, and
its timeline only after a reason is given, which is sealed in the audit record of the read."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from hub.core.errors import NotFoundError, Problem, ValidationError
from hub.governance import audit_queries, checkpoint_verify
from hub.governance.audit import AuditLog
from hub.governance.export import export_csv, export_fhir
from hub.ingest.services import Services
from hub.pages import gather
from hub.pages.access import PageGate
from hub.pages.render import page
from hub.pages.session import check_csrf
from hub.sharing.visibility import ReadView
from hub.stream import readmodel

VERIFY = ("GET", "/v1/audit/verify")
WITHHELD = ("GET", "/v1/audit/withheld")
OVERRIDES = ("GET", "/v1/audit/overrides")
SEEN = ("GET", "/v1/audit/households/{household_id}/who-has-seen")
HISTORY = ("GET", "/v1/audit/households/{household_id}/consent-history")
TIMELINE = ("GET", "/v1/households/{household_id}/timeline")
EXPORT = ("GET", "/v1/audit/export")
REASONS = "ig_reasons"  # session: household -> the reason the officer gave


def governance_pages(services: Services, gate: PageGate) -> APIRouter:
    router = APIRouter(tags=["pages"], include_in_schema=False)
    store = services.store
    log = AuditLog(store)

    @router.get("/governance")
    async def overview(request: Request, verify: bool = False) -> Response:
        """Withheld shares and overrides; the chain verified (with its checkpoints) when asked."""
        await gate.enter(request, WITHHELD, OVERRIDES, *((VERIFY,) if verify else ()))
        result = None
        if verify:
            report = await checkpoint_verify.verify_all(log, services.settings, services.settings.kafka_bootstrap)
            result = {"ok": report.ok, "records": report.records, **checkpoint_verify.summary(report),
                      "problems": [str(p) for p in report.problems][:50]}
        withheld = (await asyncio.to_thread(audit_queries.withheld, log))[-50:]
        overrides = await asyncio.to_thread(audit_queries.overrides, log)
        return page(request, "governance.html", verified=result, withheld=list(reversed(withheld)),
                    overrides=overrides)

    @router.get("/governance/household")
    async def household(request: Request, household_id: str = "") -> Response:
        """Who has seen a household's record, and its consent history (decisions, not clinical content)."""
        await gate.enter(request, SEEN, HISTORY, household_id=household_id)
        seen = await asyncio.to_thread(audit_queries.who_has_seen, log, household_id)
        history = await asyncio.to_thread(audit_queries.consent_history, log, household_id)
        return page(request, "governance_household.html", household_id=household_id, seen=seen, history=history)

    @router.post("/governance/household/reason")
    async def give_reason(request: Request, csrf: Annotated[str | None, Form()] = None,
                          household_id: Annotated[str, Form()] = "", reason: Annotated[str, Form()] = "") -> Response:
        """Record why the officer needs to see clinical content; the timeline opens with it (audited, sealed)."""
        check_csrf(request, csrf)
        await gate.enter(request)
        if len(reason.strip()) < 10:
            raise ValidationError([Problem("reason", "give the reason in at least 10 characters")])
        request.session[REASONS] = {**request.session.get(REASONS, {}), household_id: reason.strip()[:500]}
        return RedirectResponse(f"/governance/household/timeline?household_id={household_id}", status_code=303)

    @router.get("/governance/household/timeline")
    async def timeline(request: Request, household_id: str = "") -> Response:
        reason = request.session.get(REASONS, {}).get(household_id)
        if not reason:  # ask for it first (an IG officer; anyone else is refused by the page's rule)
            await gate.enter(request)
            return RedirectResponse(f"/governance/household?household_id={household_id}#reason", status_code=303)
        me = await gate.enter(request, TIMELINE, reason=reason, household_id=household_id)
        if not await asyncio.to_thread(readmodel.household_exists, store, household_id):
            raise NotFoundError("no such household")

        def read() -> dict[str, list[dict[str, object]]]:
            view = ReadView.load(store, me, [household_id])
            return {c: gather.timeline(store, view, household_id, c) for c in view.visible_children(household_id)}

        return page(request, "governance_timeline.html", household_id=household_id, reason=reason,
                    children=await asyncio.to_thread(read))

    @router.get("/governance/export")
    async def export(request: Request, format: Literal["fhir", "csv"] = "csv") -> Response:
        me = await gate.enter(request, EXPORT)
        records = await asyncio.to_thread(log.records)
        await asyncio.to_thread(log.record, "export", actor=me.subject, actor_role=me.role, purpose="audit",
                                detail={"format": format, "records": len(records), "page": True})
        name = f"audit.{'csv' if format == 'csv' else 'json'}"
        headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        if format == "csv":
            return Response(export_csv(records), media_type="text/csv", headers=headers)
        return Response(export_fhir(records), media_type="application/fhir+json", headers=headers)

    return router
