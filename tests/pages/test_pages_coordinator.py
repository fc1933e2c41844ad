"""The coordinator's pages and the family's consent form, over the real app and database: the caseload puts
the family whose report is withheld before its appointment first, with the step that unblocks it; the family
page acknowledges an alert; the parent's consent on their page shares the report."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from hub.demo.journey import ReportJourney, report_not_sent_journey
from hub.family.enrolment import Enrolment
from hub.governance.auth import Principal
from hub.ingest.services import Services
from hub.sharing import consents, readiness
from hub.sharing.alerts import list_alerts
from tests.pages.conftest import browser, csrf_of, project_logged, sign_in

pytestmark = pytest.mark.broker
COORDINATOR = Principal("cc-pages", "coordinator")
STEP = "ask the family for consent to share with Community paediatrics"


async def family(services: Services, n: int, *, consent: bool) -> ReportJourney:
    now = datetime.now(UTC)
    j = report_not_sent_journey(now, seed=700 + n, child_id=f"child-pages-{n}", household_id=f"hh-pages-{n}")
    await services.ingest.accept(j.before_consent + (j.consent if consent else []))
    Enrolment(services.store, None).assign(COORDINATOR.subject, j.household_id, by="admin")  # type: ignore[arg-type]
    return j


def parent_of(j: ReportJourney) -> Principal:
    return Principal(f"parent-{j.household_id}", "parent", household=j.household_id)


async def test_the_caseload_puts_the_withheld_report_first_and_a_parent_consents_on_their_page(
        site_services: Services) -> None:
    quiet = await family(site_services, 1, consent=True)  # on the caseload first, nothing in the way
    stuck = await family(site_services, 2, consent=False)
    position = await asyncio.to_thread(project_logged, site_services, 0, datetime.now(UTC))
    async with browser(site_services) as client:
        await sign_in(client, site_services, COORDINATOR)
        page = (await client.get("/caseload")).text
        assert page.index(stuck.household_id) < page.index(quiet.household_id)
        first = page[page.index(stuck.household_id):page.index(quiet.household_id)]
        assert "Withheld" in first and STEP in first
        assert STEP not in page[page.index(quiet.household_id):]
        # shared, but not yet opened by the service: also before the appointment, with its own step
        assert "Not read yet" in page[page.index(quiet.household_id):]
        assert "to open it in the hub&#39;s inbox" in page[page.index(quiet.household_id):]
        family_page = await client.get(f"/households/{stuck.household_id}")
        assert family_page.status_code == 200 and STEP in family_page.text
        assert f"/households/{stuck.household_id}/live?after=" in family_page.text

    async with browser(site_services) as parent:
        await sign_in(parent, site_services, parent_of(stuck))
        own = await parent.get("/family")
        assert own.status_code == 200 and "Save your choice" in own.text
        url = f"/family/children/{stuck.child_id}/consents"
        refused = await parent.post(url, data={"decision": "permit", "sectors": "health"})
        assert refused.status_code == 403  # no form token: nothing recorded
        bad = await parent.post(url, data={"csrf": csrf_of(own.text), "decision": "permit"})
        assert bad.status_code == 422 and "Choose at least one kind of service" in bad.text
        assert site_services.store.log_count() == position
        r = await parent.post(url, data={"csrf": csrf_of(own.text), "decision": "permit", "sectors": "health",
                                         "purposes": "direct_care"})
        assert r.status_code == 303 and r.headers["location"].startswith("/family?saved=1")
        assert "Your choice is recorded" in (await parent.get(r.headers["location"])).text
    await asyncio.to_thread(project_logged, site_services, position, datetime.now(UTC))
    ready = readiness.readiness(site_services.store, stuck.household_id)
    statuses = {i["status"] for c in ready["children"] for a in c["appointments"] for i in a["reports"]}
    assert "withheld" not in statuses and statuses & {"will_see", "on_its_way", "unread_in_inbox"}
    async with browser(site_services) as client:
        await sign_in(client, site_services, COORDINATOR)
        assert STEP not in (await client.get("/caseload")).text


async def test_the_coordinator_acknowledges_an_alert_with_the_form_and_only_with_it(site_services: Services) -> None:
    stuck = await family(site_services, 3, consent=False)
    await asyncio.to_thread(project_logged, site_services, 0, datetime.now(UTC))
    readiness.sweep(site_services.store)
    (alert,) = [a for a in list_alerts(site_services.store, household_id=stuck.household_id) if a["state"] == "open"]
    url = f"/households/{stuck.household_id}/alerts/{alert['alert_id']}/acknowledge"
    async with browser(site_services) as client:
        await sign_in(client, site_services, COORDINATOR)
        page = await client.get(f"/households/{stuck.household_id}")
        assert url in page.text
        assert (await client.post(url, data={})).status_code == 403
        assert list_alerts(site_services.store, household_id=stuck.household_id)[0]["state"] == "open"
        r = await client.post(url, data={"csrf": csrf_of(page.text)})
        assert r.status_code == 303
    (after,) = list_alerts(site_services.store, household_id=stuck.household_id)
    assert after["state"] == "acknowledged" and after["acknowledged_by"] == COORDINATOR.subject
    async with browser(site_services) as other:  # a coordinator of another caseload cannot
        await sign_in(other, site_services, Principal("cc-elsewhere", "coordinator"))
        page = await other.get("/")
        r = await other.post(url, data={"csrf": csrf_of(page.text)})
        assert r.status_code == 404



async def test_a_parent_withdraws_consent_on_their_page_and_the_share_stops(site_services: Services) -> None:
    j = await family(site_services, 4, consent=True)
    position = await asyncio.to_thread(project_logged, site_services, 0, datetime.now(UTC))
    async with browser(site_services) as parent:
        await sign_in(parent, site_services, parent_of(j))
        own = await parent.get("/family")
        url = f"/family/children/{j.child_id}/consents/{j.directive_id}/withdraw"
        assert url in own.text
        assert (await parent.post(url, data={})).status_code == 403
        assert site_services.store.log_count() == position  # nothing recorded without the form's token
        r = await parent.post(url, data={"csrf": csrf_of(own.text)})
        assert r.status_code == 303 and r.headers["location"].startswith("/family?withdrawn=1")
    await asyncio.to_thread(project_logged, site_services, position, datetime.now(UTC))
    (directive,) = consents.list_directives(site_services.store, j.household_id, j.child_id)
    assert directive["status"] == "withdrawn"
    async with browser(site_services) as other:  # another household's parent cannot withdraw it
        await sign_in(other, site_services, Principal("parent-x", "parent", household="hh-elsewhere"))
        page = await other.get("/family")
        r = await other.post(url, data={"csrf": csrf_of(page.text)})
        assert r.status_code == 404
