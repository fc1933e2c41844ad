"""Coordination alerts raised by `hub up`'s own sweep (the deliverer's coordination job, over the households
with something new or due), read over HTTP by the household's coordinator, and refused to those who must not
read them: no token, another caseload's coordinator, an agency. Nothing the alert says names the child's NHS
number."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.scenarios.running import SWEEP_EVERY, RunningHub, door
from tests.support import bearer

PHYSIO = {"agency_id": "7A6", "sector": "health", "service_name": "Physiotherapy, Serennu"}
SLT = {"agency_id": "7A6", "sector": "health", "service_name": "Speech and language therapy, Serennu"}


def attendance(tag: str, n: int, days_ago: int, service: dict[str, str], outcome: str, nhs: str) -> dict[str, Any]:
    at = datetime.now(UTC) - timedelta(days=days_ago)
    return {"record_type": "AttendanceRecorded", "sector": "health", "source_system": "abuhb-wcp",
            "source_id": f"att-{tag}-{n}", "source_version": 1, "occurred_at": at.isoformat(),
            "subject": {"system": "nhs-number", "value": nhs},
            "body": {"appointment_id": f"appt-{tag}-{n}", "service": service, "outcome": outcome}}


def test_an_alert_the_hub_raises_is_read_by_the_households_coordinator_alone(hub: RunningHub) -> None:
    d = door(hub, "al", 890_000)
    tag, nhs, coordinator, household = d.tag, d.nhs, d.coordinator, d.household
    agency = bearer("agency", f"abuhb-{tag}", agency="7A6")
    path = f"/v1/households/{household}/alerts"

    def send(event: dict[str, Any]) -> None:
        r = hub.call("POST", "/v1/events", agency, json=[event])
        assert r.status_code == 200 and r.json()[0]["status"] == "accepted", r.text

    # one missed appointment is no pattern: the household is projected and swept with nothing to raise ...
    send(attendance(tag, 1, 20, PHYSIO, "did_not_attend", nhs))
    hub.eventually(lambda: coordinator.timeline(household), "the first attendance on the timeline")
    time.sleep(3 * SWEEP_EVERY)
    assert hub.call("GET", path, coordinator.auth).json()["alerts"] == []
    # ... and the second is a change in its feed, which the next sweep reads
    send(attendance(tag, 2, 6, SLT, "could_not_attend", nhs))

    def alerts() -> list[dict[str, Any]]:
        got = hub.call("GET", path, coordinator.auth)
        assert got.status_code == 200, got.text
        return [a for a in got.json()["alerts"] if a["kind"] == "missed_appointments"]

    (alert,) = hub.eventually(alerts, "the sweep to raise the missed appointments alert", alerts)
    assert alert["message"].startswith("2 appointments missed within 90 days") and alert["state"] == "open"
    assert nhs not in str(alert)
    refused = {
        "nobody": ({}, 401),
        "another caseload's coordinator": (bearer("coordinator", d.other), 404),
        "an agency": (agency, 403),
    }
    for who, (headers, status) in refused.items():
        got = hub.call("GET", path, headers)
        assert got.status_code == status, (who, got.status_code, got.text)
        assert "missed" not in got.text and nhs not in got.text, who
        ack = hub.call("POST", f"{path}/{alert['alert_id']}/acknowledge", headers)
        assert ack.status_code == status, (who, ack.status_code, ack.text)
    assert alerts()[0]["state"] == "open"  # no refused caller acknowledged it
