"""The KPI page (a commissioner, IG, an admin): the coordination KPIs of ``GET /v1/kpis`` over a period, as
server-drawn SVG charts (:mod:`hub.pages.charts`), each with a table of the same figures beside it."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response

from hub.core.errors import Problem, ValidationError
from hub.ingest.services import Services
from hub.pages.access import PageGate
from hub.pages.charts import charts
from hub.pages.render import N_, gettext, page
from hub.sharing import kpis
from hub.sharing.coordination import statutory_clocks

SOURCE = ("GET", "/v1/kpis")
#: what each chart and column is called (translated for the reader)
WORDS = {
    "dna_rate": N_("Appointments not attended (DNA)"),
    "cna_rate": N_("Appointments the family could not attend (CNA)"),
    "referral_to_first_contact": N_("Referral to first contact, median"),
    "report_latency": N_("Report issued to delivered, median"),
    "reports_ready": N_("Appointments with every other service's report delivered 2 days before"),
    "copies_to_family": N_("Reports with a copy in the family's own view"),
    "statutory_deadlines": N_("Statutory deadlines met"),
    "caseloads": N_("Families on each coordinator's caseload"),
    "days": N_("days"), "hours": N_("hours"), "families": N_("families"),
    "appointments": N_("appointments"), "dna": N_("not attended"), "cna": N_("could not attend"),
    "referrals": N_("referrals"), "contacted": N_("contacted"), "still_waiting": N_("still waiting"),
    "deliveries": N_("deliveries"), "acknowledged": N_("acknowledged"), "with_reports": N_("with reports"),
    "all_ready": N_("all ready"), "reports": N_("reports"), "copied_to_family": N_("copied to the family"),
    "clock_row": N_("%(clock)s (%(nation)s)"),
    "due": N_("due"), "met": N_("met"), "late": N_("late"), "stopped": N_("stopped"), "overdue": N_("overdue"),
}

#: the nations whose statutory clocks the hub keeps (hub/stream/rulesets/statutory-clocks.yaml)
NATIONS = {"england": N_("England"), "wales": N_("Wales")}


def name_clocks(request: Request, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each statutory clock's row labelled by the clock's title and nation in the reader's language, as the
    rule set names them (an id the rule set no longer holds keeps its id)."""
    titles = {c.id: c.title for c in statutory_clocks().clocks}
    return [{**r, "label": gettext(request, WORDS["clock_row"]) % {
        "clock": gettext(request, titles[r["clock"]]) if r["clock"] in titles else r["clock"],
        "nation": gettext(request, NATIONS[r["nation"]]) if r["nation"] in NATIONS else r["nation"]}}
        for r in rows]


def period(start: str, end: str) -> tuple[date, date]:
    """The period the form asks for (default: the 12 months to today); 422 naming the field for a bad date."""
    problems = []
    today = datetime.now(UTC).date()
    chosen: dict[str, date] = {}
    for name, text, default in (("start", start, today - timedelta(days=365)), ("end", end, today + timedelta(days=1))):
        try:
            chosen[name] = date.fromisoformat(text) if text else default
        except ValueError:
            problems.append(Problem(name, "give a date as YYYY-MM-DD"))
    if not problems and chosen["end"] <= chosen["start"]:
        problems.append(Problem("end", "the end must be after the start"))
    if problems:
        raise ValidationError(problems, title="Period not understood")
    return chosen["start"], chosen["end"]


def kpi_pages(services: Services, gate: PageGate) -> APIRouter:
    router = APIRouter(tags=["pages"], include_in_schema=False)

    @router.get("/kpis")
    async def kpi_page(request: Request, start: str = "", end: str = "",
                       by: Literal["service", "agency"] = "service") -> Response:
        """The KPIs as charts with tables, over the period and grouping chosen."""
        await gate.enter(request, SOURCE)
        first, last = period(start[:10], end[:10])
        result = await asyncio.to_thread(kpis.kpis, services.store, datetime.combine(first, time(), UTC),
                                         datetime.combine(last, time(), UTC), by)
        words = {k: gettext(request, v) for k, v in WORDS.items()}
        result["kpis"]["statutory_deadlines"] = name_clocks(request, result["kpis"]["statutory_deadlines"])
        return page(request, "kpis.html", charts=charts(result, words), words=words, start=first.isoformat(),
                    end=last.isoformat(), by=by)

    return router
