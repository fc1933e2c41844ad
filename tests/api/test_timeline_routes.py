"""Coordinator routes over real HTTP against a real broker and database: enrolment and identifier
links, the family timeline with filters and pages, the team around the child, upcoming appointments,
caseloads, and the live stream resuming from Last-Event-ID with no gap and no repeat."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn

from hub.api.app import create_app
from hub.api.streams import resume_position
from hub.demo.identifiers import nhs_number, upn
from hub.ingest.services import Services
from hub.kafka.broker import free_port
from hub.stream import projection
from tests.api.conftest import token_header

pytestmark = pytest.mark.broker
NOW = datetime.now(UTC).replace(microsecond=0)
SLT = {"agency_id": "7A6", "sector": "health", "service_name": "Speech and language therapy"}
PHYSIO = {"agency_id": "7A6", "sector": "health", "service_name": "Physiotherapy"}
SCHOOL = {"agency_id": "S1", "sector": "education", "service_name": "Maes Ebbw Special School"}


def event(record_type: str, source_id: str, days: float, body: dict[str, Any], *, ident: tuple[str, str],
          sector: str = "health", version: int = 1) -> dict[str, Any]:
    return {"record_type": record_type, "sector": sector, "source_system": "abuhb", "source_id": source_id,
            "source_version": version, "occurred_at": (NOW + timedelta(days=days)).isoformat(),
            "subject": {"system": ident[0], "value": ident[1]}, "body": body}


def project_log(services: Services) -> None:
    """What the stream worker does, run inline: decode the accepted events and project them."""
    decoded = []
    for batch in services.store.iter_log():
        for rec in batch:
            d = services.serde.decode(rec.value)
            decoded.append((d.record_type, services.catalogue.writer(d.record_type).ce_type, d.record))
    projection.apply(services.store, decoded)


async def enrol_family(client: httpx.AsyncClient, services: Services,
                       coordinator: str = "cc-newport-7") -> dict[str, str]:
    cc = token_header(services, "coordinator", coordinator)
    r = await client.post("/v1/households", json={"coordinator_id": coordinator}, headers=cc)
    hh = r.json()["household_id"]
    child = (await client.post(f"/v1/households/{hh}/members", headers=cc, json={
        "kind": "child", "relationship": "child", "date_of_birth": "2024-04-01"})).json()
    mother = (await client.post(f"/v1/households/{hh}/members", headers=cc, json={
        "kind": "adult", "relationship": "mother", "parental_responsibility": True})).json()
    for system, value in (("nhs-number", nhs_number(61)), ("upn", upn(61))):
        r = await client.post(f"/v1/households/{hh}/members/{child['member_id']}/identifiers", headers=cc,
                              json={"system": system, "value": value})
        assert r.status_code == 202, r.text
    return {"household": hh, "child": child["member_id"], "mother": mother["member_id"]}


async def test_enrolment_timeline_team_appointments_and_caseload(client: httpx.AsyncClient,
                                                                 services: Services) -> None:
    fam = await enrol_family(client, services)
    hh, child = fam["household"], fam["child"]
    cc = token_header(services, "coordinator", "cc-newport-7")
    nhs, pupil = ("nhs-number", nhs_number(61)), ("upn", upn(61))
    bad = await client.post(f"/v1/households/{hh}/members/{child}/identifiers", headers=cc,
                            json={"system": "nhs-number", "value": "9990000017"})
    assert bad.status_code == 422 and "9990000017" not in bad.text and "check" in bad.text.lower()

    events = [
        event("ReferralMade", "ref-1", -60, {"service": SLT}, ident=nhs),
        event("AppointmentBooked", "appt-1", -30, {"service": SLT, "start": (NOW + timedelta(days=10)).isoformat(),
                                                   "contact_type": "new"}, ident=nhs),
        event("AppointmentBooked", "appt-1", -20, {"service": SLT, "start": (NOW + timedelta(days=14)).isoformat(),
                                                   "contact_type": "new"}, ident=nhs, version=2),
        event("AppointmentBooked", "appt-2", -25, {"service": PHYSIO, "start": (NOW + timedelta(days=3)).isoformat()},
              ident=nhs),
        event("AppointmentCancelled", "cx-2", -5, {"appointment_id": "appt-2", "service": PHYSIO,
                                                   "cancelled_by": "family"}, ident=nhs),
        event("ServiceDischarged", "dis-1", -2, {"service": PHYSIO}, ident=nhs),
        event("SchoolPlacement", "pl-1", -90, {"school": SCHOOL, "start_date": (NOW - timedelta(days=90)).date()
                                               .isoformat()}, ident=pupil, sector="education"),
    ]
    r = await client.post("/v1/events", json=events)
    assert r.status_code == 200, r.text
    project_log(services)

    page1 = (await client.get(f"/v1/households/{hh}/timeline", params={"limit": 3}, headers=cc)).json()
    page2 = (await client.get(f"/v1/households/{hh}/timeline", headers=cc,
                              params={"limit": 3, "cursor": page1["next_cursor"]})).json()
    kinds = [e["record_type"] for e in page1["entries"] + page2["entries"]]
    assert kinds == ["SchoolPlacement", "ReferralMade", "AppointmentBooked", "AppointmentBooked",
                     "AppointmentCancelled", "ServiceDischarged"]
    assert page2["next_cursor"] is None
    edu = (await client.get(f"/v1/households/{hh}/timeline", params={"sector": "education"}, headers=cc)).json()
    assert [e["record_type"] for e in edu["entries"]] == ["SchoolPlacement"]

    team = (await client.get(f"/v1/households/{hh}/children/{child}/team", headers=cc)).json()["team"]
    assert sorted(m["service"] for m in team) == ["Maes Ebbw Special School", "Speech and language therapy"]

    appts = (await client.get(f"/v1/households/{hh}/appointments", headers=cc)).json()["children"][child]
    assert [(a["service"], a["rescheduled"]) for a in appts] == [("Speech and language therapy", True)]
    assert datetime.fromisoformat(appts[0]["start"]) == NOW + timedelta(days=14)

    mine = (await client.get("/v1/coordinators/cc-newport-7/caseload", headers=cc)).json()["households"]
    assert [(h["household_id"], h["upcoming_appointments"]) for h in mine] == [(hh, 1)]
    other = token_header(services, "coordinator", "cc-torfaen-2")
    assert (await client.get("/v1/coordinators/cc-torfaen-2/caseload", headers=other)).json()["households"] == []
    # another coordinator asking for this family by id learns nothing, not even that it exists
    theirs = await client.get(f"/v1/households/{hh}/timeline", headers=other)
    nobody = await client.get("/v1/households/hh-nope/timeline", headers=other)
    assert theirs.status_code == nobody.status_code == 404 and theirs.json() == nobody.json()

    # a wrong link is undone: the school's entries leave the family's timeline
    r = await client.post(f"/v1/households/{hh}/members/{child}/identifiers/unlink", headers=cc,
                          json={"system": "upn", "value": upn(61), "reason": "linked to the wrong child"})
    assert r.status_code == 202 and r.json()["version"] == 2
    project_log(services)
    after = (await client.get(f"/v1/households/{hh}/timeline", headers=cc)).json()["entries"]
    assert "SchoolPlacement" not in [e["record_type"] for e in after] and len(after) == 5


@pytest.fixture
def server(services: Services) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(create_app(services), host="127.0.0.1", port=port, log_config=None, lifespan="off")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


def read_sse(url: str, auth: dict[str, str], n: int,
             last_id: str | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    headers = {**auth, **({"Last-Event-ID": last_id} if last_id else {})}
    out: list[tuple[str, str, dict[str, Any]]] = []
    with httpx.stream("GET", url, headers=headers, timeout=10) as r:
        assert r.status_code == 200
        ev: dict[str, str] = {}
        for line in r.iter_lines():
            if line.startswith(("id:", "event:", "data:")):
                key, _, value = line.partition(":")
                ev[key] = value.strip()
            elif not line and "data" in ev:
                out.append((ev["id"], ev["event"], json.loads(ev["data"])))
                ev = {}
                if len(out) == n:
                    break
    return out


async def test_live_stream_resumes_without_gaps_or_repeats(client: httpx.AsyncClient, services: Services,
                                                           server: str) -> None:
    fam = await enrol_family(client, services, "cc-stream")
    hh = fam["household"]
    cc = token_header(services, "coordinator", "cc-stream")
    nhs = ("nhs-number", nhs_number(61))
    first = [event("AttendanceRecorded", f"att-{i}", -i, {"appointment_id": f"a{i}", "service": PHYSIO,
                                                          "outcome": "attended"}, ident=nhs) for i in range(5)]
    assert (await client.post("/v1/events", json=first)).status_code == 200
    await asyncio.to_thread(project_log, services)

    got = await asyncio.to_thread(read_sse, f"{server}/v1/households/{hh}/stream", cc, 3)
    assert [k for _, k, _ in got] == ["added"] * 3
    more = [event("AttendanceRecorded", f"att-{i}", -i, {"appointment_id": f"a{i}", "service": PHYSIO,
                                                         "outcome": "did_not_attend"}, ident=nhs) for i in range(5, 8)]
    assert (await client.post("/v1/events", json=more)).status_code == 200
    await asyncio.to_thread(project_log, services)
    rest = await asyncio.to_thread(read_sse, f"{server}/v1/households/{hh}/stream", cc, 5, got[-1][0])
    ids = [int(i) for i, _, _ in got + rest]
    assert ids == sorted(set(ids)) and len(ids) == 8  # no repeat, in order
    assert len({d["event_id"] for _, _, d in got + rest}) == 8  # no gap: every entry arrived once
    caseload = await asyncio.to_thread(read_sse, f"{server}/v1/coordinators/cc-stream/stream", cc, 8)
    assert [int(i) for i, _, _ in caseload] == ids


@pytest.mark.parametrize("last_id", ["²", "١٢", "9" * 40, "-3", "x", ""])
def test_a_last_event_id_that_is_not_a_position_starts_the_stream_from_the_start(last_id: str) -> None:
    assert resume_position(last_id) == 0
    assert resume_position("12") == 12 and resume_position(last_id, after=5) == 5
