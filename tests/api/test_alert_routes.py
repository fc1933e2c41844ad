"""Alert routes: the household's coordinator acknowledges an alert (audited) and lists alerts by state;
another caseload's coordinator does not learn the household exists, a parent is refused (real app, real
broker, SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from hub.demo.journey import report_not_sent_journey
from hub.governance.audit import AuditLog
from hub.ingest.services import Services
from hub.sharing import readiness
from tests.api.conftest import token_header
from tests.sharing.sharing_support import Feeder

COORDINATOR = "cc-alerts"


async def household_with_an_alert(client: httpx.AsyncClient, services: Services) -> tuple[str, int]:
    now = datetime.now(UTC).replace(microsecond=0)
    j = report_not_sent_journey(now, seed=911, child_id="c-911", household_id="hh-911")
    Feeder(services.store, now).feed(j.before_consent, now)  # the report is withheld before an appointment
    assert readiness.sweep(services.store, now) == 1
    admin = token_header(services, "admin", "ops")
    r = await client.post(f"/v1/coordinators/{COORDINATOR}/caseload", json={"household_id": j.household_id},
                          headers=admin)
    assert r.status_code == 204
    r = await client.get(f"/v1/households/{j.household_id}/alerts",
                         headers=token_header(services, "coordinator", COORDINATOR))
    (alert,) = r.json()["alerts"]
    assert alert["state"] == "open"
    return j.household_id, alert["alert_id"]


async def test_the_coordinator_acknowledges_an_alert_and_the_acknowledgement_is_audited(
        client: httpx.AsyncClient, services: Services) -> None:
    hh, alert_id = await household_with_an_alert(client, services)
    mine = token_header(services, "coordinator", COORDINATOR)
    url = f"/v1/households/{hh}/alerts/{alert_id}/acknowledge"

    r = await client.post(url, headers=mine)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["state"] == "acknowledged" and body["acknowledged_by"] == COORDINATOR
    assert body["acknowledged_at"] is not None and body["resolved_at"] is None
    again = await client.post(url, headers=mine)  # idempotent: the first acknowledgement stands
    assert again.status_code == 200 and again.json()["acknowledged_at"] == body["acknowledged_at"]

    (record,) = AuditLog(services.store).records(household=hh, actions=["alert_acknowledged"])
    assert record.actor == COORDINATOR and record.actor_role == "coordinator"
    assert record.detail == {"alert_id": alert_id, "kind": "readiness"}
    assert record.subject_child == "c-911"

    listed = await client.get(f"/v1/households/{hh}/alerts?state=acknowledged", headers=mine)
    assert [a["alert_id"] for a in listed.json()["alerts"]] == [alert_id]
    for state in ("open", "resolved"):
        r = await client.get(f"/v1/households/{hh}/alerts?state={state}", headers=mine)
        assert r.status_code == 200 and r.json()["alerts"] == []
    assert (await client.get(f"/v1/households/{hh}/alerts?state=closed", headers=mine)).status_code == 422
    unknown = await client.post(f"/v1/households/{hh}/alerts/999999/acknowledge", headers=mine)
    assert unknown.status_code == 404


async def test_others_cannot_acknowledge_the_households_alert(client: httpx.AsyncClient, services: Services) -> None:
    hh, alert_id = await household_with_an_alert(client, services)
    url = f"/v1/households/{hh}/alerts/{alert_id}/acknowledge"

    other = await client.post(url, headers=token_header(services, "coordinator", "cc-elsewhere"))
    assert other.status_code == 404  # another caseload: the household is not theirs to know of
    parent = await client.post(url, headers=token_header(services, "parent", "parent-911", household=hh,
                                                         member="parent-911"))
    assert parent.status_code == 403
    agency = await client.post(url, headers=token_header(services, "agency", "abuhb-pas", agency="7A6"))
    assert agency.status_code == 403
    nobody = await client.post(url, headers={"Authorization": ""})
    assert nobody.status_code == 401

    assert AuditLog(services.store).records(household=hh, actions=["alert_acknowledged"]) == []
    r = await client.get(f"/v1/households/{hh}/alerts?state=open",
                         headers=token_header(services, "coordinator", COORDINATOR))
    assert [a["alert_id"] for a in r.json()["alerts"]] == [alert_id]  # still open
