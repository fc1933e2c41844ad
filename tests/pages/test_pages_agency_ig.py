"""The agency's inbox and the information governance pages, over the real app and database."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest

from hub.governance.audit import AuditLog
from hub.governance.auth import Principal
from hub.ingest.services import Services
from hub.sharing import delivery
from tests.pages.conftest import browser, csrf_of, project_logged, sign_in
from tests.pages.test_pages_coordinator import family

pytestmark = pytest.mark.broker
PAEDIATRICS = Principal("abuhb-paediatrics", "agency", agency="7A6")
IG = Principal("ig-pages", "ig_officer")
REASON = "complaint IG-4411: report not received"


async def test_the_paediatric_service_reads_and_acknowledges_its_inbox(site_services: Services) -> None:
    j = await family(site_services, 5, consent=True)
    await asyncio.to_thread(project_logged, site_services, 0, datetime.now(UTC))
    async with browser(site_services) as other:  # another agency sees none of it
        await sign_in(other, site_services, Principal("cav-slt", "agency", agency="7A7"))
        page = await other.get("/inbox")
        assert page.status_code == 200 and "Speech and language therapy report" not in page.text
    async with browser(site_services) as client:
        await sign_in(client, site_services, PAEDIATRICS)
        page = await client.get("/inbox")
        assert page.status_code == 200 and "Speech and language therapy report" in page.text
        (item,) = [i for i in delivery.inbox(site_services.store, "7A6")[0]
                   if (i["content"].get("information") or {}).get("record_type") == "ReportIssued"]
        url = f"/inbox/{item['delivery_id']}/ack"
        assert url in page.text
        assert (await client.post(url, data={})).status_code == 403
        assert (await other_state(site_services, item["delivery_id"])) == "delivered"
        r = await client.post(url, data={"csrf": csrf_of(page.text)})
        assert r.status_code == 303
    assert await other_state(site_services, item["delivery_id"]) == "acknowledged"
    reads = AuditLog(site_services.store).records(household=j.household_id, actions=["read_report"])
    assert any("(page /inbox)" in (r.data_ref or "") for r in reads)  # the family's transparency view has it


async def test_an_agency_sees_the_team_around_a_child_it_serves_and_nothing_of_others(site_services: Services
                                                                                       ) -> None:
    j = await family(site_services, 7, consent=True)
    await asyncio.to_thread(project_logged, site_services, 0, datetime.now(UTC))
    async with browser(site_services) as client:
        await sign_in(client, site_services, PAEDIATRICS)
        inbox = await client.get("/inbox")
        url = f"/inbox/children/{j.child_id}/team"
        assert url in inbox.text
        page = await client.get(url)
        assert page.status_code == 200 and "Speech and language therapy" in page.text
        assert "Speech and language therapy report" not in page.text  # who, never what
    async with browser(site_services) as outsider:  # an agency outside the child's team
        await sign_in(outsider, site_services, Principal("powys", "agency", agency="7A7X"))
        assert (await outsider.get(url)).status_code == 404
    async with browser(site_services) as parent:
        await sign_in(parent, site_services, Principal("p", "parent", household=j.household_id))
        assert (await parent.get(url)).status_code == 403
    refused = [r for r in AuditLog(site_services.store).records(actions=["login_denied"])
               if r.subject_child == j.child_id and r.actor == "powys"]
    assert refused


async def test_an_agency_sees_the_state_of_what_it_sent_and_only_its_own(site_services: Services) -> None:
    j = await family(site_services, 8, consent=False)
    async with browser(site_services) as client:
        await sign_in(client, site_services, PAEDIATRICS)
        page = await client.get("/inbox/sent")
        assert page.status_code == 200
        assert f"abuhb-appt-paeds-{j.child_id}" in page.text and "Published" in page.text
        assert f"cav-slt-report-{j.child_id}" not in page.text  # another agency's record
    async with browser(site_services) as parent:
        await sign_in(parent, site_services, Principal("p", "parent", household=j.household_id))
        assert (await parent.get("/inbox/sent")).status_code == 403


async def other_state(services: Services, delivery_id: str) -> str:
    items, _ = await asyncio.to_thread(delivery.inbox, services.store, "7A6")
    return str(next(i["state"] for i in items if i["delivery_id"] == delivery_id))


async def test_ig_verifies_the_chain_and_gives_a_reason_before_seeing_a_record(site_services: Services) -> None:
    j = await family(site_services, 6, consent=False)
    await asyncio.to_thread(project_logged, site_services, 0, datetime.now(UTC))
    async with browser(site_services) as coordinator:  # nobody else opens these pages
        await sign_in(coordinator, site_services, Principal("cc-pages", "coordinator"))
        assert (await coordinator.get("/governance")).status_code == 403
        assert (await coordinator.get(f"/governance/household?household_id={j.household_id}")).status_code == 403
    async with browser(site_services) as client:
        await sign_in(client, site_services, IG)
        page = await client.get("/governance?verify=1")
        assert page.status_code == 200 and "The audit chain verifies" in page.text
        seen = await client.get(f"/governance/household?household_id={j.household_id}")
        assert seen.status_code == 200 and "Why do you need to see" in seen.text
        timeline = f"/governance/household/timeline?household_id={j.household_id}"
        r = await client.get(timeline)
        assert r.status_code == 303 and "data-event" not in r.text  # asked for a reason first
        short = await client.post("/governance/household/reason",
                                  data={"csrf": csrf_of(seen.text), "household_id": j.household_id, "reason": "look"})
        assert short.status_code == 422 and "at least 10 characters" in short.text
        r = await client.post("/governance/household/reason",
                              data={"csrf": csrf_of(seen.text), "household_id": j.household_id, "reason": REASON})
        assert r.status_code == 303
        opened = await client.get(timeline)
        assert opened.status_code == 200 and "data-event" in opened.text and REASON in opened.text
        export = await client.get("/governance/export?format=csv")
        assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    (read,) = [r for r in AuditLog(site_services.store).records(household=j.household_id, actions=["read_timeline"])
               if r.actor == IG.subject]
    assert read.purpose == "investigation" and "reason" in read.detail
    assert REASON not in json.dumps(read.detail)  # sealed, not in plain text
