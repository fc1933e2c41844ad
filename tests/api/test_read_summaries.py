"""A coordinator's caseload counts and alerts tell no more than their timeline shows (real app, real broker,
SQLite and PostgreSQL).

The family has not agreed to share anything with care coordination. The child has a CAMHS assessment
(mental health, a restricted category: hidden from the coordinator) that owes a report, and a speech
and language therapy report withheld from the paediatrician before an appointment (shown to the
coordinator redacted). The hub raised a report request about the CAMHS assessment and a readiness
alert naming both; the coordinator's caseload counts only the entries their timeline shows, and their
alerts neither mention CAMHS nor the report's title.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from hub.core.events import InboundEvent
from hub.demo.journey import report_not_sent_journey
from hub.ingest.services import Services
from hub.sharing import readiness
from hub.sharing.alerts import list_alerts
from tests.api.conftest import token_header
from tests.sharing.sharing_support import Feeder

COORDINATOR = "cc-summaries"
CAMHS = {"agency_id": "7A6", "agency_name": "Aneurin Bevan University Health Board", "sector": "health",
         "service_code": "CAMHS", "service_name": "CAMHS Gwent"}
SLT_TITLE = "Speech and language therapy report"


async def family_with_restricted_entry(client: httpx.AsyncClient, services: Services) -> tuple[str, str]:
    now = datetime.now(UTC).replace(microsecond=0)
    j = report_not_sent_journey(now, seed=931, child_id="c-931", household_id="hh-931")
    nhs = next(e.subject for e in j.before_consent if e.record_type == "ReportIssued")
    camhs = InboundEvent(record_type="AssessmentCompleted", sector="health", source_system="abuhb-wcp",
                         source_id="abuhb-camhs-assess-931", occurred_at=now - timedelta(days=60), subject=nhs,
                         body={"service": CAMHS, "assessment_kind": "Mental health assessment"},
                         category="mental_health", mapping="demo@1")
    Feeder(services.store, now).feed([*j.before_consent, camhs], now)
    readiness.sweep(services.store, now)
    kinds = {a["kind"]: a for a in list_alerts(services.store, household_id=j.household_id)}
    # what the hub holds: a report request to CAMHS, a readiness alert naming the report and CAMHS
    assert "CAMHS" in kinds["report_request"]["message"]
    assert SLT_TITLE in str(kinds["readiness"]["details"]) and "CAMHS" in kinds["readiness"]["message"]
    r = await client.post(f"/v1/coordinators/{COORDINATOR}/caseload", json={"household_id": j.household_id},
                          headers=token_header(services, "admin", "ops"))
    assert r.status_code == 204
    return j.household_id, j.child_id


async def test_the_caseload_counts_only_what_the_coordinators_timeline_shows(
        client: httpx.AsyncClient, services: Services) -> None:
    hh, child = await family_with_restricted_entry(client, services)
    cc = token_header(services, "coordinator", COORDINATOR)

    timeline = (await client.get(f"/v1/households/{hh}/timeline", headers=cc, params={"limit": 500})).json()
    caseload = await client.get(f"/v1/coordinators/{COORDINATOR}/caseload", headers=cc)

    assert caseload.status_code == 200, caseload.text
    (family,) = caseload.json()["households"]
    shown = [e for e in timeline["entries"] if e["child_id"] == child]
    assert not [e for e in shown if e.get("service_name") == CAMHS["service_name"]]
    assert family["children"] == {child: len(shown)}
    assert family["upcoming_appointments"] == 1  # the paediatric appointment is on the timeline
    assert "CAMHS" not in caseload.text


async def test_the_coordinator_reads_no_alert_about_a_hidden_entry_and_no_title_of_a_redacted_one(
        client: httpx.AsyncClient, services: Services) -> None:
    hh, child = await family_with_restricted_entry(client, services)
    cc = token_header(services, "coordinator", COORDINATOR)

    r = await client.get(f"/v1/households/{hh}/alerts", headers=cc)

    assert r.status_code == 200, r.text
    (alert,) = r.json()["alerts"]  # the report request to CAMHS is not there at all
    assert alert["kind"] == "readiness" and alert["child_id"] == child
    assert "CAMHS" not in r.text and SLT_TITLE not in r.text
    withheld = alert["details"]["withheld"]
    assert {i["record_type"] for i in withheld} == {"AssessmentCompleted", "ReportIssued"}  # the SLT's
    assert {(i["title"], i["reason_code"]) for i in withheld} == {("details withheld", "READ-coordinator-no-consent")}
    assert alert["details"]["overdue"] == []  # the CAMHS report owed is not counted either
    assert alert["message"].startswith("Before the Community paediatrics, Serennu appointment on ")
    assert "2 report(s) withheld, 0 overdue" in alert["message"]

async def test_a_coordinator_of_another_caseload_reads_neither_the_alerts_nor_the_counts(
        client: httpx.AsyncClient, services: Services) -> None:
    hh, _ = await family_with_restricted_entry(client, services)
    other = token_header(services, "coordinator", "cc-elsewhere")

    alerts = await client.get(f"/v1/households/{hh}/alerts", headers=other)
    caseload = await client.get(f"/v1/coordinators/{COORDINATOR}/caseload", headers=other)

    assert alerts.status_code == 404 and "CAMHS" not in alerts.text
    assert caseload.status_code == 404 and hh not in caseload.text
