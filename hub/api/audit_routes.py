"""Information-governance routes over the audit log, and the family's own transparency view."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Request, Response

from hub.governance import audit, audit_queries, checkpoint_verify
from hub.governance.audit_seal import open_detail
from hub.governance.export import export_csv, export_fhir
from hub.ingest.services import Services
from hub.sharing.transparency import family_view
from hub.sharing.visibility import ReadView, visible_items


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def audit_router(services: Services) -> APIRouter:
    router = APIRouter(tags=["audit"])
    log = audit.AuditLog(services.store)

    @router.get("/v1/audit/verify")
    async def verify() -> dict[str, Any]:
        """Walk the hash chain and compare it with the signed checkpoints (file, topic): name every altered,
        deleted, reordered, inserted, truncated, forged or appended record and every missing checkpoint."""
        settings = services.settings
        report = await checkpoint_verify.verify_all(log, settings, settings.kafka_bootstrap)
        return {"ok": report.ok, "records": report.records, "anchors_checked": report.anchors_checked,
                **checkpoint_verify.summary(report), "problems": [str(p) for p in report.problems],
                "dead_letters": await asyncio.to_thread(log.dead_letter_count)}

    @router.get("/v1/audit/records")
    async def records(household_id: str | None = None, action: str | None = None) -> list[Any]:
        """Audit records in seq order, with the sealed reasons (link, unlink, investigation) opened for IG."""
        found = await asyncio.to_thread(log.records, household=household_id,
                                        actions=[action] if action else None)
        opened = [dataclasses.replace(r, detail=await asyncio.to_thread(open_detail, services.vault, r.detail))
                  for r in found]
        return _plain(opened)  # type: ignore[no-any-return]

    @router.get("/v1/audit/households/{household_id}/who-has-seen")
    async def who_has_seen(household_id: str) -> list[Any]:
        return _plain(await asyncio.to_thread(audit_queries.who_has_seen, log, household_id))  # type: ignore[no-any-return]

    @router.get("/v1/audit/withheld")
    async def withheld(household_id: str | None = None) -> list[Any]:
        """What was withheld or held, and why."""
        return _plain(await asyncio.to_thread(audit_queries.withheld, log, household_id))  # type: ignore[no-any-return]

    @router.get("/v1/audit/overrides")
    async def overrides(since: datetime | None = None, until: datetime | None = None,
                        awaiting: bool = False) -> list[Any]:
        """Safeguarding overrides in a period, awaiting review or reviewed."""
        found = await asyncio.to_thread(audit_queries.overrides, log, since=since, until=until, awaiting_only=awaiting)
        return _plain(found)  # type: ignore[no-any-return]

    @router.get("/v1/audit/households/{household_id}/consent-history")
    async def consent_history(household_id: str) -> list[Any]:
        return _plain(await asyncio.to_thread(audit_queries.consent_history, log, household_id))  # type: ignore[no-any-return]

    @router.get("/v1/audit/export")
    async def export(request: Request, format: Literal["fhir", "csv"] = "fhir",
                     household_id: str | None = None) -> Response:
        """The audit records as FHIR R4 AuditEvents (a Bundle) or CSV; the export itself is audited."""
        records = await asyncio.to_thread(log.records, household=household_id)
        principal = getattr(request.state, "principal", None)
        await asyncio.to_thread(log.record, "export", actor=getattr(principal, "subject", "unknown"),
                                actor_role=getattr(principal, "role", ""), subject_household=household_id,
                                purpose="audit", detail={"format": format, "records": len(records)})
        if format == "csv":
            return Response(export_csv(records), media_type="text/csv")
        return Response(export_fhir(records), media_type="application/fhir+json")

    @router.get("/v1/households/{household_id}/transparency", tags=["family"])
    async def transparency(household_id: str, request: Request) -> dict[str, Any]:
        """For each report the caller may see: which service and professional received it, when, on what basis,
        who read it; safeguarding decisions the family may be told about; who viewed the timeline. Plain words,
        no ids."""
        view = await asyncio.to_thread(ReadView.load, services.store, getattr(request.state, "principal", None),
                                       [household_id])

        def visible(items: list[tuple[str, str]]) -> set[tuple[str, str]]:
            return visible_items(view, services.store, household_id, items)

        return await asyncio.to_thread(family_view, services.store, household_id, visible=visible)

    return router
