"""Coordination alerts as a coordinator meets them over HTTP (real broker, real database): two missed
appointments sent by the health board raise one alert with the step to take, it arrives on the
coordinator's live streams in order with the timeline, and nobody else can see or acknowledge it."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest

from hub.api.streams import feed_page
from hub.demo.identifiers import nhs_number, upn
from hub.governance.auth import Principal
from hub.ingest.services import Services
from hub.sharing import coordination
from tests.api.conftest import token_header
from tests.api.test_timeline_routes import NOW, PHYSIO, SLT, enrol_family, event, project_log, read_sse, server

pytestmark = pytest.mark.broker
SEND = {"agency_id": "7A6", "sector": "education", "service_name": "SEN and inclusion team"}
__all__ = ["server"]  # the live HTTP server fixture, shared with the timeline routes' tests


async def household_with_missed_appointments(client: httpx.AsyncClient, services: Services) -> dict[str, str]:
    fam = await enrol_family(client, services, "cc-alerts")
    nhs = ("nhs-number", nhs_number(61))
    missed = [event("AttendanceRecorded", "att-dna-1", -20, {"appointment_id": "a1", "service": PHYSIO,
                                                            "outcome": "did_not_attend"}, ident=nhs),
              event("AttendanceRecorded", "att-cna-1", -6, {"appointment_id": "a2", "service": SLT,
                                                           "outcome": "could_not_attend"}, ident=nhs)]
    assert (await client.post("/v1/events", json=missed)).status_code == 200
    await asyncio.to_thread(project_log, services)
    assert await asyncio.to_thread(coordination.sweep, services.store) == 1
    return fam


async def test_the_coordinator_sees_the_alert_with_its_step_and_acknowledges_it(client: httpx.AsyncClient,
                                                                                services: Services) -> None:
    fam = await household_with_missed_appointments(client, services)
    hh, mine = fam["household"], token_header(services, "coordinator", "cc-alerts")
    (alert,) = (await client.get(f"/v1/households/{hh}/alerts", headers=mine)).json()["alerts"]
    assert alert["kind"] == "missed_appointments" and alert["state"] == "open"
    assert alert["message"] == "2 appointments missed within 90 days (Physiotherapy, Speech and language therapy)"
    assert alert["details"]["step"].startswith("Contact the family")
    assert nhs_number(61) not in str(alert)

    url = f"/v1/households/{hh}/alerts/{alert['alert_id']}/acknowledge"
    other = token_header(services, "coordinator", "cc-elsewhere")
    assert (await client.get(f"/v1/households/{hh}/alerts", headers=other)).status_code == 404
    assert (await client.post(url, headers=other)).status_code == 404  # another caseload's coordinator
    parent = token_header(services, "parent", "parent-1", household=hh, member=fam["mother"])
    assert (await client.post(url, headers=parent)).status_code == 403
    (still,) = (await client.get(f"/v1/households/{hh}/alerts", headers=mine)).json()["alerts"]
    assert still["state"] == "open"

    acked = await client.post(url, headers=mine)
    assert acked.status_code == 200 and acked.json()["state"] == "acknowledged"


async def test_alerts_reach_the_coordinators_streams_and_no_one_elses(client: httpx.AsyncClient, services: Services,
                                                                      server: str) -> None:
    fam = await household_with_missed_appointments(client, services)
    hh, mine = fam["household"], token_header(services, "coordinator", "cc-alerts")
    got = await asyncio.to_thread(read_sse, f"{server}/v1/households/{hh}/stream", mine, 3)
    assert [k for _, k, _ in got] == ["added", "added", "alert"]
    _, _, alert = got[-1]
    assert alert["alert_kind"] == "missed_appointments" and alert["details"]["step"].startswith("Contact")
    ids = [int(i) for i, _, _ in got]
    assert ids == sorted(ids)
    caseload = await asyncio.to_thread(read_sse, f"{server}/v1/coordinators/cc-alerts/stream", mine, 3)
    assert [(i, k) for i, k, _ in caseload] == [(i, k) for i, k, _ in got]

    parent = token_header(services, "parent", "parent-1", household=hh, member=fam["mother"])
    theirs = await asyncio.to_thread(read_sse, f"{server}/v1/households/{hh}/stream", parent, 2)
    assert [k for _, k, _ in theirs] == ["added", "added"]
    mother = Principal("parent-1", "parent", household=hh, member=fam["mother"])
    end, shown = await asyncio.to_thread(feed_page, services.store, [hh], 0, mother)
    assert end == ids[1] and [r["kind"] for r in shown] == ["added", "added"]  # no alert for a parent
    with httpx.stream("GET", f"{server}/v1/households/{hh}/stream", timeout=10,
                      headers=token_header(services, "coordinator", "cc-elsewhere")) as r:
        assert r.status_code == 404


async def test_the_coordinator_reads_the_childs_statutory_clocks_and_no_one_else_does(client: httpx.AsyncClient,
                                                                                       services: Services) -> None:
    fam = await enrol_family(client, services, "cc-clocks")
    hh, mine = fam["household"], token_header(services, "coordinator", "cc-clocks")
    requested = (NOW - timedelta(days=30)).date()
    body = {"service": SEND, "request_received_date": requested.isoformat(), "requested_by": "family"}
    sent = [event("EhcAssessmentRequested", "ehc-req-1", -30, body, ident=("upn", upn(61)), sector="education")]
    assert (await client.post("/v1/events", json=sent)).status_code == 200
    await asyncio.to_thread(project_log, services)

    r = await client.get(f"/v1/households/{hh}/clocks", headers=mine)
    assert r.status_code == 200
    clocks = {c["clock"]: c for c in r.json()["children"][fam["child"]]}
    assert set(clocks) == {"ehc_assessment_decision", "ehc_final_plan"}
    decision = clocks["ehc_assessment_decision"]
    assert decision["deadline"] == (requested + timedelta(weeks=6)).isoformat() and decision["state"] == "running"
    assert decision["days_left"] == 12 and "reg. 5(1)" in decision["source"]
    assert clocks["ehc_final_plan"]["days_left"] == 20 * 7 - 30

    other = await client.get(f"/v1/households/{hh}/clocks", headers=token_header(services, "coordinator", "cc-else"))
    assert other.status_code == 404
    parent = token_header(services, "parent", "parent-1", household=hh, member=fam["mother"])
    assert (await client.get(f"/v1/households/{hh}/clocks", headers=parent)).status_code == 403
    assert (await client.get(f"/v1/households/{hh}/clocks", headers={"Authorization": ""})).status_code == 401


async def test_kpis_as_json_and_csv_for_a_commissioner_and_no_one_whose_work_or_family_they_measure(
        client: httpx.AsyncClient, services: Services) -> None:
    await household_with_missed_appointments(client, services)
    period = {"start": (NOW - timedelta(days=60)).isoformat(), "end": NOW.isoformat()}
    commissioner = token_header(services, "commissioner", "devon-commissioning")
    r = await client.get("/v1/kpis", params=period, headers=commissioner)
    assert r.status_code == 200
    (physio,) = [g for g in r.json()["kpis"]["attendance"] if g["service"] == "Physiotherapy"]
    assert (physio["appointments"], physio["dna"], physio["dna_rate"]) == (1, 1, 1.0)
    assert r.json()["kpis"]["caseloads"]["coordinators"] == [{"coordinator_id": "cc-alerts", "families": 1}]
    assert nhs_number(61) not in r.text

    csv_ = await client.get("/v1/kpis", params={**period, "format": "csv", "by": "agency"}, headers=commissioner)
    assert csv_.status_code == 200 and csv_.headers["content-type"].startswith("text/csv")
    lines = csv_.text.splitlines()
    assert lines[0] == "kpi,agency_id,service,household_type,measure,value"
    assert "attendance,7A6,,,cna,1" in lines and "attendance,7A6,,,appointments,2" in lines
    ig = token_header(services, "ig_officer", "ig-1")
    assert (await client.get("/v1/kpis", params=period, headers=ig)).status_code == 200

    backwards = await client.get("/v1/kpis", params={"start": period["end"], "end": period["start"]},
                                 headers=commissioner)
    assert backwards.status_code == 422 and "end must be after start" in backwards.text
    for refused in (token_header(services, "coordinator", "cc-alerts"),
                    token_header(services, "agency", "abuhb-pas", agency="7A6"),
                    token_header(services, "parent", "parent-1", household="h", member="m")):
        assert (await client.get("/v1/kpis", params=period, headers=refused)).status_code == 403
    assert (await client.get("/v1/kpis", params=period, headers={"Authorization": ""})).status_code == 401


async def test_kpis_by_household_type_for_a_commissioner_only(client: httpx.AsyncClient, services: Services) -> None:
    await household_with_missed_appointments(client, services)  # a mother with parental responsibility, one child
    period = {"start": (NOW - timedelta(days=60)).isoformat(), "end": NOW.isoformat()}
    commissioner = token_header(services, "commissioner", "devon-commissioning")
    r = await client.get("/v1/kpis", params={**period, "by": "household_type"}, headers=commissioner)
    assert r.status_code == 200 and r.json()["by"] == "household_type"
    (row,) = r.json()["kpis"]["attendance"]
    assert row == {"household_type": "one_parent_one_child", "appointments": 2, "dna": 1, "cna": 1,
                   "dna_rate": 0.5, "cna_rate": 0.5}

    one = {**period, "household_type": "one_parent_one_child"}
    narrowed = await client.get("/v1/kpis", params=one, headers=commissioner)
    assert narrowed.json()["household_type"] == "one_parent_one_child"
    assert {g["service"] for g in narrowed.json()["kpis"]["attendance"]} == {"Physiotherapy",
                                                                             "Speech and language therapy"}
    other = await client.get("/v1/kpis", params={**period, "household_type": "two_parents_one_child"},
                             headers=commissioner)
    assert other.json()["kpis"]["attendance"] == [] and other.json()["kpis"]["caseloads"]["max_families"] == 1

    csv_ = await client.get("/v1/kpis", params={**period, "by": "household_type", "format": "csv"},
                            headers=commissioner)
    lines = csv_.text.splitlines()
    assert lines[0] == "kpi,agency_id,service,household_type,measure,value"
    assert "attendance,,,one_parent_one_child,dna,1" in lines
    narrowed_csv = await client.get("/v1/kpis", params={**one, "format": "csv"}, headers=commissioner)
    assert "attendance,7A6,Physiotherapy,one_parent_one_child,dna,1" in narrowed_csv.text.splitlines()

    bad = await client.get("/v1/kpis", params={**period, "household_type": "single mum"}, headers=commissioner)
    assert bad.status_code == 422 and "unknown household type 'single mum'" in bad.text
    assert "one_parent_one_child" in bad.text and nhs_number(61) not in bad.text
    for params in ({**period, "by": "household_type"}, one):
        for refused in (token_header(services, "coordinator", "cc-alerts"),
                        token_header(services, "agency", "abuhb-pas", agency="7A6"),
                        token_header(services, "parent", "parent-1", household="h", member="m")):
            assert (await client.get("/v1/kpis", params=params, headers=refused)).status_code == 403
        assert (await client.get("/v1/kpis", params=params, headers={"Authorization": ""})).status_code == 401


CARE_COORD = {"agency_id": "W06000022", "sector": "social_care", "service_name": "Complex needs care coordination"}
OT = {"agency_id": "7A6", "sector": "health", "service_name": "Occupational therapy"}


async def test_the_coordinator_makes_one_referral_to_several_services_and_follows_each_answer(
        client: httpx.AsyncClient, services: Services) -> None:
    fam = await enrol_family(client, services, "cc-refer")
    hh, child, mine = fam["household"], fam["child"], token_header(services, "coordinator", "cc-refer")
    await asyncio.to_thread(project_log, services)  # the child's identifiers linked
    url = f"/v1/households/{hh}/children/{child}/referrals"
    body = {"referrer_service": CARE_COORD, "services": [SLT, PHYSIO, OT], "reason": "feeding and development"}

    twice = await client.post(url, headers=mine, json={**body, "services": [SLT, SLT]})
    assert twice.status_code == 422 and "named twice" in twice.text
    bad = await client.post(url, headers=mine, json={**body, "services": [{"service_name": "OT"}]})
    assert bad.status_code == 422 and "services[0] needs agency_id" in bad.text
    other = token_header(services, "coordinator", "cc-else")
    assert (await client.post(url, headers=other, json=body)).status_code == 404
    agency = token_header(services, "agency", "abuhb-pas", agency="7A6")
    assert (await client.post(url, headers=agency, json=body)).status_code == 403
    assert (await client.get(f"/v1/households/{hh}/referrals", headers=mine)).json()["referrals"] == []

    made = await client.post(url, headers={**mine, "Idempotency-Key": "ref-1"}, json=body)
    assert made.status_code == 202 and made.json()["parts"] == 3 and made.json()["status"] == "accepted"
    logged = services.store.log_count()
    # the answer was lost and the coordinator's system sends it again: the same referral, nothing new
    again = await client.post(url, headers={**mine, "Idempotency-Key": "ref-1"}, json=body)
    assert again.status_code == 202, again.text
    assert again.json() == {**made.json(), "status": "duplicate"}
    assert services.store.log_count() == logged
    await asyncio.to_thread(project_log, services)
    referral_id = made.json()["referral_id"]
    assert [r["referral_id"] for r in (await client.get(f"/v1/households/{hh}/referrals", headers=mine)
                                       ).json()["referrals"]] == [referral_id]
    one = (await client.get(f"/v1/households/{hh}/referrals/{referral_id}", headers=mine)).json()
    assert [r["service"]["service_name"] for r in one["services"]] == ["Speech and language therapy", "Physiotherapy",
                                                                       "Occupational therapy"]
    assert {r["answer"] for r in one["services"]} == {"no_answer"}

    answer = [event("ReferralOutcome", "ot-out-1", 1, {"service": OT, "referral_id": one["services"][2]["event_id"],
                                                       "outcome": "declined", "reason": "not in catchment"},
                    ident=("nhs-number", nhs_number(61)))]
    assert (await client.post("/v1/events", json=answer)).status_code == 200
    await asyncio.to_thread(project_log, services)
    one = (await client.get(f"/v1/households/{hh}/referrals/{referral_id}", headers=mine)).json()
    assert (one["services"][2]["answer"], one["services"][2]["reason"]) == ("declined", "not in catchment")
    assert (await client.get(f"/v1/households/{hh}/referrals/{referral_id}", headers=other)).status_code == 404
    assert (await client.get(f"/v1/households/{hh}/referrals/no-such", headers=mine)).status_code == 404
