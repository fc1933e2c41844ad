"""The KPI page: a commissioner sees each KPI as a server-drawn chart with a table of the same figures beside
it (values written, not told by colour), over the period they choose; coordinators, families, agencies and
nobody signed in are refused, and a bad period is refused naming the field; statutory clocks are named by their
title and nation."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import pytest

from hub.demo.journey import report_not_sent_journey
from hub.family.enrolment import Enrolment
from hub.governance.auth import Principal
from hub.ingest.services import Services
from hub.pages.render import translations
from tests.pages.conftest import browser, project_logged, sign_in
from tests.pages.test_pages_clocks import DECISION
from tests.pages.test_pages_clocks import family as clock_family

pytestmark = pytest.mark.broker
COMMISSIONER = Principal("commissioner-1", "commissioner")


async def test_a_commissioner_reads_the_kpis_as_charts_with_tables(site_services: Services) -> None:
    svc = site_services
    j = report_not_sent_journey(datetime.now(UTC), seed=851, child_id="child-kpi-1", household_id="hh-kpi-1")
    await svc.ingest.accept(j.before_consent + j.consent)
    Enrolment(svc.store, None).assign("cc-kpi", j.household_id, by="admin")  # type: ignore[arg-type]
    await asyncio.to_thread(project_logged, svc, 0, datetime.now(UTC))
    async with browser(svc) as client:
        await sign_in(client, svc, COMMISSIONER)
        r = await client.get("/kpis")
        assert r.status_code == 200
        page = r.text
        assert page.count("<svg class=\"hub-chart\"") == page.count("Figures: ") >= 1  # a table beside each chart
        assert "Families on each coordinator&#39;s caseload" in page
        caseloads = page[page.index("Families on each coordinator&#39;s caseload"):]
        assert ">cc-kpi<" in caseloads and re.search(r"hub-chart__value\">1 ?<", caseloads)  # the value is written
        assert "role=\"img\"" in page and "<title id=\"chart-" in page
        assert "Appointments not attended (DNA)" in page
        start = (datetime.now(UTC) - timedelta(days=30)).date().isoformat()
        narrowed = await client.get(f"/kpis?start={start}&by=agency")
        assert narrowed.status_code == 200 and f'value="{start}"' in narrowed.text
        bad = await client.get("/kpis?start=yesterday")
        assert bad.status_code == 422 and "Give the start as a date, YYYY-MM-DD" in bad.text
        backwards = await client.get("/kpis?start=2026-05-01&end=2026-04-01")
        assert backwards.status_code == 422 and "after the start" in backwards.text
        welsh = await client.get("/kpis?lang=cy")
        assert welsh.status_code == 200 and "Appointments not attended (DNA)" not in welsh.text

    for who in (Principal("cc-kpi", "coordinator"), Principal("parent-kpi", "parent", household=j.household_id),
                Principal("yp-kpi", "young_person", household=j.household_id, member=j.child_id),
                Principal("abuhb", "agency", agency="7A6")):
        async with browser(svc) as client:
            await sign_in(client, svc, who)
            r = await client.get("/kpis")
            assert r.status_code == 403 and "hub-chart" not in r.text, who.role
    async with browser(svc) as nobody:
        assert (await nobody.get("/kpis")).status_code == 401


async def test_statutory_clock_rows_are_named_by_title_and_nation_in_the_readers_language(
        site_services: Services) -> None:
    svc = site_services
    await clock_family(svc, 61, 35)  # an EHC assessment decision due in 7 days (England)
    await asyncio.to_thread(project_logged, svc, 0, datetime.now(UTC))
    end = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
    async with browser(svc) as client:
        await sign_in(client, svc, COMMISSIONER)
        english = (await client.get(f"/kpis?end={end}&lang=en")).text
        deadlines = english[english.index("Statutory deadlines met"):]
        assert f"{DECISION} (England)" in deadlines and "ehc_assessment_decision" not in english
        welsh = (await client.get(f"/kpis?end={end}&lang=cy")).text.replace("&#39;", "'")
        cy = translations("cy")
        assert f"{cy.gettext(DECISION)} ({cy.gettext('England')})" in welsh
        assert "(Lloegr)" in welsh and DECISION not in welsh and "ehc_assessment_decision" not in welsh
