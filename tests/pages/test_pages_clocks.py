"""Statutory clocks on the coordinator's pages: the caseload and the family page show each running clock with
its deadline and days left, the nearest deadline first, and a clock close to its deadline puts its family
before a quiet one; the family's own view, another caseload's coordinator and nobody signed in do not."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from hub.core.events import InboundEvent
from hub.demo.journey import ReportJourney, report_not_sent_journey
from hub.family.enrolment import Enrolment
from hub.governance.auth import Principal
from hub.ingest.services import Services
from tests.pages.conftest import browser, project_logged, sign_in

pytestmark = pytest.mark.broker
COORDINATOR = Principal("cc-clocks-pages", "coordinator")
SEND = {"agency_id": "7A6", "sector": "education", "service_name": "SEN and inclusion team"}
DECISION = "Decision whether to carry out an EHC needs assessment"
FINAL = "Final EHC plan issued (or notice that none will be)"


async def family(services: Services, n: int, requested_days_ago: int | None) -> ReportJourney:
    now = datetime.now(UTC)
    j = report_not_sent_journey(now, seed=830 + n, child_id=f"child-clock-{n}", household_id=f"hh-clock-{n}",
                                appointment_in_days=30)
    events = j.before_consent + j.consent
    if requested_days_ago is not None:
        requested = (now - timedelta(days=requested_days_ago)).date()
        events.append(InboundEvent(record_type="EhcAssessmentRequested", sector="education",
                                   source_system="send-case", source_id=f"ehc-req-{n}",
                                   occurred_at=now - timedelta(days=requested_days_ago), subject=j.subject,
                                   body={"service": SEND, "request_received_date": requested.isoformat(),
                                         "requested_by": "family"}, mapping="demo@1"))
    await services.ingest.accept(events)
    Enrolment(services.store, None).assign(COORDINATOR.subject, j.household_id, by="admin")  # type: ignore[arg-type]
    return j


async def test_running_clocks_show_with_deadline_and_days_left_soonest_first(site_services: Services) -> None:
    svc = site_services
    quiet = await family(svc, 1, None)
    near = await family(svc, 2, 35)  # the 6-week decision is due in 7 days: within the 14-day warning
    await asyncio.to_thread(project_logged, svc, 0, datetime.now(UTC))
    deadline = (datetime.now(UTC) - timedelta(days=35)).date() + timedelta(weeks=6)
    async with browser(svc) as client:
        await sign_in(client, svc, COORDINATOR)
        caseload = (await client.get("/caseload")).text
        assert caseload.index(near.household_id) < caseload.index(quiet.household_id)
        mine = caseload[caseload.index(near.household_id):caseload.index(quiet.household_id)]
        assert "Deadline near" in mine and "7 days left" in mine and DECISION in mine
        assert mine.index(DECISION) < mine.index(FINAL)  # the nearest deadline first
        assert f"{deadline.day} {deadline:%B %Y}" in mine
        assert DECISION not in caseload[caseload.index(quiet.household_id):]
        page = (await client.get(f"/households/{near.household_id}")).text
        assert "Running statutory clocks, the nearest deadline first" in page
        assert page.index(DECISION) < page.index(FINAL) and "7 days left" in page and "reg. 5(1)" in page
    async with browser(svc) as other:  # another caseload's coordinator
        await sign_in(other, svc, Principal("cc-elsewhere", "coordinator"))
        assert DECISION not in (await other.get("/caseload")).text
        assert (await other.get(f"/households/{near.household_id}")).status_code == 404
    async with browser(svc) as parent:  # the family's own view is not the coordinator's work list
        await sign_in(parent, svc, Principal("parent-clock", "parent", household=near.household_id))
        assert (await parent.get(f"/households/{near.household_id}")).status_code == 403
    async with browser(svc) as nobody:
        assert (await nobody.get(f"/households/{near.household_id}")).status_code == 401
        assert (await nobody.get("/caseload")).status_code == 401
