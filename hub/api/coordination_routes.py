"""Coordination routes: the statutory clocks of a household's children, and the KPIs.

* ``GET /v1/households/{hid}/clocks`` — each child's statutory clocks (England SEND, Wales ALN; the
  nations of ``HUB_STATUTORY_NATIONS``): what started each, its deadline and legal source, its state
  (``running``, ``overdue``, ``met``, ``late``, ``stopped`` by a recorded exception) and, while it runs,
  the days left, as of today (``as_of``). The household's coordinator only.
* ``POST /v1/households/{hid}/children/{cid}/referrals`` — a multi-agency referral (body: ``referrer_service``,
  ``services``, ``reason``, ``priority``): one referral, every service named (202 with its ``referral_id``).
* ``GET /v1/households/{hid}/referrals`` and ``…/referrals/{referral_id}`` — each referral with one row per
  service and its answer (accepted, declined with its reason, waiting list with its estimate, first
  appointment booked, no answer). The household's coordinator only.
* ``GET /v1/kpis?start=&end=&by=service|agency|household_type&household_type=&format=json|csv`` — the KPIs over
  ``[start, end)``, grouped by service, agency or household type, optionally over one household type's
  children only (definitions: docs/operations.md, "KPIs: definitions"). A commissioner, IG officer or admin only.
"""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, Query
from fastapi.responses import JSONResponse, Response

from hub.core.errors import UNEXPECTED_FIELD, NotFoundError, Problem, ValidationError
from hub.ingest.services import Services
from hub.sharing import coordination, kpis, referrals
from hub.stream import readmodel
from hub.stream.household_types import TYPES
from hub.stream.kpis import CSV_FIELDS, as_csv_rows


def coordination_router(services: Services) -> APIRouter:
    router = APIRouter(tags=["coordination"])
    store = services.store

    @router.get("/v1/households/{household_id}/clocks")
    async def statutory_clocks(household_id: str) -> dict[str, Any]:
        """The children's statutory clocks with their deadlines and days left."""
        if not await asyncio.to_thread(readmodel.children, store, household_id):
            raise NotFoundError("no such household")
        return await asyncio.to_thread(coordination.household_clocks, store, household_id)

    @router.post("/v1/households/{household_id}/children/{child_id}/referrals", status_code=202)
    async def refer(household_id: str, child_id: str,
                    body: Annotated[dict[str, Any], Body(description="referrer_service, services, reason, priority")],
                    idempotency_key: Annotated[str | None, Header(max_length=200)] = None) -> dict[str, Any]:
        """One referral to several services; each is told through its webhook or inbox as consent allows.

        Send an ``Idempotency-Key`` to retry safely: the same key for the same child answers with the
        referral the first request made (``duplicate``) and records nothing again."""
        if set(body) - set(referrals.BODY_FIELDS):  # a made-up field is refused, its name not repeated
            raise ValidationError(Problem("/", UNEXPECTED_FIELD), title="Not a usable referral")
        referral_id, accepted = await referrals.create(
            store, services.ingest, household_id, child_id, referrer_service=body.get("referrer_service"),
            services=body.get("services"), reason=body.get("reason"), priority=body.get("priority"),
            idempotency_key=idempotency_key)
        return {"referral_id": referral_id, "parts": len(accepted),
                "status": "duplicate" if all(a.status == "duplicate" for a in accepted) else "accepted"}

    @router.get("/v1/households/{household_id}/referrals")
    async def household_referrals(household_id: str) -> dict[str, Any]:
        return {"household_id": household_id,
                "referrals": await asyncio.to_thread(referrals.referrals, store, household_id)}

    @router.get("/v1/households/{household_id}/referrals/{referral_id}")
    async def one_referral(household_id: str, referral_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(referrals.referral, store, household_id, referral_id)

    @router.get("/v1/kpis", response_class=Response, responses={200: {"description": "The KPIs", "content": {
        "application/json": {"schema": {"type": "object", "title": "KPIs"}},
        "text/csv": {"schema": {"type": "string"}}}}})
    async def read_kpis(start: datetime, end: datetime,
                        by: Literal["service", "agency", "household_type"] = "service",
                        household_type: Annotated[str | None, Query(
                            description=f"only households of this type: {', '.join(TYPES)}")] = None,
                        format: Annotated[Literal["json", "csv"], Query()] = "json") -> Response:
        """DNA and CNA rates, referral to first contact, report latency, reports ready before appointments,
        copies to the family and caseload sizes, over the period, by service, agency or household type."""
        start, end = _utc(start), _utc(end)
        if end <= start:
            raise ValidationError(Problem("/end", "end must be after start"))
        result = await asyncio.to_thread(kpis.kpis, store, start, end, by, None, household_type)
        if format == "json":
            return JSONResponse(result)
        out = io.StringIO()
        writer = csv.DictWriter(out, CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(as_csv_rows(result))
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8")

    return router


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
