"""Where an event comes from, through `hub up`: every ingest call is bound to the calling agency.

An integrator's view of the ingest edge, each check made as the one who must be refused:

* an agency cannot link a child into a household (``IdentityLinked`` is the hub's own record): 403,
  audited as ``ingest_refused``, and the household gains nothing;
* one trust's ``ServiceRequest/4242`` and ``Appointment/4242`` are two records; two trusts'
  ``Appointment/4242`` (each with its own version 2) are each their own child's;
* with an agency registry (``HUB_AGENCIES_FILE``): a record naming another agency's organisation is
  refused and lands nowhere, an agency missing from the registry is told to ask an administrator;
  a FHIR Consent recorded by an agency that is not a registered consent recorder waits for the
  family to confirm it, and nothing is shared on it until they do;
* afterwards neither the hub's log nor any text column of its database holds the NHS numbers,
  names or dates of birth that were sent.
"""

from __future__ import annotations

import csv
import io
import json
import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.identifiers import FHIR_NHS_NUMBER_SYSTEM, FHIR_ODS_ORGANISATION_SYSTEM
from hub.demo.identifiers import nhs_number
from hub.demo.journey import CAV_SLT, report_not_sent_journey
from tests.scenarios.agency_payloads import CAV_NEUROLOGY, PAEDIATRICS, SLT, appointment, referral
from tests.scenarios.running import Agency, AgencyEndpoint, Coordinator, RunningHub
from tests.scenarios.test_report_journey import paediatric_item, send
from tests.support import bearer

pytestmark = pytest.mark.scenario

FHIR = {"Content-Type": "application/fhir+json"}
REGISTRY = {"agencies": [
    {"id": "7A6", "name": "Aneurin Bevan University Health Board", "sectors": ["health"],
     "source_systems": ["abuhb-wcp", "abuhb-fhir"], "organisations": ["7A6"]},
    {"id": "7A4", "name": "Cardiff and Vale University Health Board", "sectors": ["health"],
     "source_systems": ["cav-wcp"], "organisations": ["7A4"], "records_consent": False},
]}
UNREGISTERED = "7A3"  # Swansea Bay: not in the registry
#: what was sent about people in this module, none of which may be found in clear afterwards
SENT: set[str] = set()
PATIENT_NAME = ("Pritchard-Vaughan", "Eirlys")
PATIENT_BIRTH_DATE = "2017-02-19"


def tag_and_nhs(count: int = 1) -> tuple[str, list[str]]:
    seed = random.randrange(1_000, 900_000) * 10
    numbers = [nhs_number(seed + i) for i in range(count)]
    SENT.update(numbers)
    return "t" + uuid.uuid4().hex[:9], numbers


def at(days: float) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) + timedelta(days=days)


def entries(coordinator: Coordinator, household: str) -> list[tuple[str, str, str]]:
    return [(e["record_type"], e["child_id"], e["agency_id"]) for e in coordinator.timeline(household)]


def audit_rows(hub: RunningHub, action: str) -> list[dict[str, str]]:
    """The audit records of ``action``, as an IG officer exports them."""
    r = hub.call("GET", "/v1/audit/export", bearer("ig_officer", "ig-origin"), params={"format": "csv"})
    assert r.status_code == 200, r.text
    return [row for row in csv.DictReader(io.StringIO(r.text)) if row["action"] == action]


# --- on the hub as the scenario suite runs it (no registry: every agency token is its own) ---------


def test_an_agency_cannot_link_another_child_into_a_household(hub: RunningHub) -> None:
    tag, (other_nhs,) = tag_and_nhs()
    coordinator = Coordinator(hub, f"cc-origin-{tag}")
    theirs, (other_child,) = coordinator.enrol(children=1)
    coordinator.link(theirs, other_child, "nhs-number", other_nhs)
    target, (target_child,) = coordinator.enrol(children=1)
    trust = Agency(hub, f"abuhb-{tag}", "7A6")
    try:
        trust.health(referral(f"ref-{tag}", other_nhs, at(-10), SLT, "communication"))
    finally:
        trust.close()
    hub.eventually(lambda: len(entries(coordinator, theirs)) == 1, "the other child's referral")

    link = {"record_type": "IdentityLinked", "sector": "hub", "source_system": "hub-enrolment",
            "source_id": f"{target_child}:nhs-number", "occurred_at": at(0).isoformat(),
            "subject": {"system": "nhs-number", "value": other_nhs},
            "body": {"action": "link", "child_id": target_child, "household_id": target,
                     "identifier_system": "nhs-number", "reason": "enrolled with the family"}}
    r = hub.call("POST", "/v1/events", bearer("agency", f"abuhb-{tag}", agency="7A6"), json=[link])
    assert r.status_code == 403, r.text
    assert "IdentityLinked is hub-internal" in r.json()["detail"] and other_nhs not in r.text

    hub.eventually(hub.caught_up, "the workers to catch up")
    assert coordinator.timeline(target) == []  # the other child's referral did not join this household
    assert [e[1] for e in entries(coordinator, theirs)] == [other_child]
    refused = [json.loads(row["detail"]) for row in audit_rows(hub, "ingest_refused")
               if row["actor"] == f"abuhb-{tag}"]
    assert refused == [{"agency": "7A6", "rule": "internal_record"}]


def test_a_service_request_and_an_appointment_with_one_id_are_two_entries(hub: RunningHub) -> None:
    tag, (nhs,) = tag_and_nhs()
    coordinator = Coordinator(hub, f"cc-origin-{tag}")
    household, (child,) = coordinator.enrol(children=1)
    coordinator.link(household, child, "nhs-number", nhs)
    trust = Agency(hub, f"abuhb-{tag}", "7A6")
    try:
        asked = trust.health(referral("4242", nhs, at(-5), PAEDIATRICS, "developmental review"))
        booked = trust.health(appointment("4242", nhs, at(-1), at(14), 30, PAEDIATRICS, "first review"))
    finally:
        trust.close()
    assert asked["accepted"] == booked["accepted"] == 1, (asked, booked)
    hub.eventually(lambda: len(entries(coordinator, household)) == 2, "two entries on the child's timeline",
                   show=lambda: entries(coordinator, household))
    assert sorted(entries(coordinator, household)) == [("AppointmentBooked", child, "7A6"),
                                                      ("ReferralMade", child, "7A6")]


def test_two_trusts_one_appointment_id_each_family_sees_its_own(hub: RunningHub) -> None:
    tag, (nhs_a, nhs_b) = tag_and_nhs(2)
    coordinator = Coordinator(hub, f"cc-origin-{tag}")
    home_a, (child_a,) = coordinator.enrol(children=1)
    home_b, (child_b,) = coordinator.enrol(children=1)
    coordinator.link(home_a, child_a, "nhs-number", nhs_a)
    coordinator.link(home_b, child_b, "nhs-number", nhs_b)
    abuhb, cav = Agency(hub, f"abuhb-{tag}", "7A6"), Agency(hub, f"cav-{tag}", "7A4")
    booked, moved_a, moved_b = at(-3), at(12), at(13)
    try:
        answers = [
            abuhb.health(appointment("4242", nhs_a, booked, at(10), 30, PAEDIATRICS, "review")),
            cav.health(appointment("4242", nhs_b, booked, at(11), 45, CAV_NEUROLOGY, "neurology clinic")),
            abuhb.health(appointment("4242", nhs_a, at(-2), moved_a, 30, PAEDIATRICS, "review", version=2)),
            cav.health(appointment("4242", nhs_b, at(-2), moved_b, 45, CAV_NEUROLOGY, "neurology clinic",
                                   version=2)),
        ]
    finally:
        abuhb.close()
        cav.close()
    assert [a["accepted"] for a in answers] == [1, 1, 1, 1], answers
    hub.eventually(hub.caught_up, "the workers to catch up")

    # read as IG with a reason: the coordinator has no consent to see these appointments (the read policy)
    ig = bearer("ig_officer", "ig-origin") | {"X-Investigation-Reason": "two trusts reuse one appointment id"}

    def entries(home: str) -> list[dict[str, Any]]:
        r = hub.call("GET", f"/v1/households/{home}/timeline", ig, params={"limit": "100"})
        return list(r.json()["entries"]) if r.status_code == 200 else []

    def at_version_2(home: str) -> bool:
        found = entries(home)
        return len(found) == 1 and found[0].get("source_version") == 2

    hub.eventually(lambda: at_version_2(home_a) and at_version_2(home_b), "both appointments at version 2")
    (a,) = entries(home_a)
    (b,) = entries(home_b)
    assert (a["child_id"], a["agency_id"], a["service_name"]) == (child_a, "7A6", PAEDIATRICS.service_name)
    assert (b["child_id"], b["agency_id"], b["service_name"]) == (child_b, "7A4", CAV_NEUROLOGY.service_name)
    assert a["event_id"] != b["event_id"]


def test_another_trusts_cancellation_with_the_same_id_leaves_the_appointment_standing(hub: RunningHub) -> None:
    # one child seen by two trusts whose systems both number appointments: Cardiff and Vale cancels its own
    # Appointment/4343; Aneurin Bevan's Appointment/4343 for the same child still stands before the clinic
    tag, (nhs,) = tag_and_nhs()
    coordinator = Coordinator(hub, f"cc-origin-{tag}")
    household, (child,) = coordinator.enrol(children=1)
    coordinator.link(household, child, "nhs-number", nhs)
    abuhb, cav = Agency(hub, f"abuhb-{tag}", "7A6"), Agency(hub, f"cav-{tag}", "7A4")
    try:
        answers = [abuhb.health(appointment("4343", nhs, at(-3), at(10), 30, PAEDIATRICS, "review")),
                   cav.health(appointment("4343", nhs, at(-3), at(11), 45, CAV_NEUROLOGY, "neurology clinic")),
                   cav.health({**appointment("4343", nhs, at(-1), at(11), 45, CAV_NEUROLOGY, "neurology clinic",
                                             version=2), "status": "cancelled"})]
    finally:
        abuhb.close()
        cav.close()
    assert [a["accepted"] for a in answers] == [1, 1, 1], answers
    hub.eventually(hub.caught_up, "the workers to catch up")

    def ahead() -> list[tuple[str, str]]:
        return [(a["agency_id"], a["service"]) for a in coordinator.appointments(household).get(child, [])]

    hub.eventually(lambda: ahead() == [("7A6", PAEDIATRICS.service_name)], "Aneurin Bevan's appointment alone",
                   show=ahead)


# --- on the same hub restarted with an agency registry ----------------------------------------------


@pytest.fixture(scope="module")
def registered(hub: RunningHub) -> Iterator[RunningHub]:
    """The suite's hub restarted with ``HUB_AGENCIES_FILE``; restarted without it afterwards."""
    path = hub.log.parent / "agencies.json"
    path.write_text(json.dumps(REGISTRY))
    hub.stop()
    hub.env["HUB_AGENCIES_FILE"] = str(path)
    hub.start()
    yield hub
    if hub.proc is not None:
        hub.stop()
    hub.env.pop("HUB_AGENCIES_FILE", None)
    hub.start()


def test_a_record_naming_another_agencys_organisation_lands_nowhere(registered: RunningHub) -> None:
    hub = registered
    tag, (nhs,) = tag_and_nhs()
    coordinator = Coordinator(hub, f"cc-origin-{tag}")
    household, (child,) = coordinator.enrol(children=1)
    coordinator.link(household, child, "nhs-number", nhs)
    abuhb = {**bearer("agency", "abuhb-fhir", agency="7A6"), **FHIR}
    # Aneurin Bevan's system sends an appointment as if Cardiff and Vale's neurology service had booked it
    forged = appointment(f"appt-{tag}", nhs, at(-1), at(9), 30, CAV_NEUROLOGY, "neurology clinic")
    r = hub.call("POST", "/v1/ingest/health", abuhb, content=json.dumps(forged))
    assert r.status_code == 403, r.text
    assert "organisation '7A4'" in r.json()["detail"] and nhs not in r.text

    own = referral(f"ref-{tag}", nhs, at(-2), PAEDIATRICS, "developmental review")
    assert hub.call("POST", "/v1/ingest/health", abuhb, content=json.dumps(own)).status_code == 200
    hub.eventually(lambda: entries(coordinator, household) != [], "the agency's own referral")
    hub.eventually(hub.caught_up, "the workers to catch up")
    assert entries(coordinator, household) == [("ReferralMade", child, "7A6")]

    swansea = {**bearer("agency", "sbuhb-fhir", agency=UNREGISTERED), **FHIR}
    r = hub.call("POST", "/v1/ingest/health", swansea, content=json.dumps(own))
    assert r.status_code == 403, r.text
    problem = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert problem["status"] == 403 and "ask an administrator" in problem["detail"]
    assert UNREGISTERED in problem["detail"] and "HUB_AGENCIES_FILE" in problem["detail"]
    rules = {(json.loads(row["detail"])["agency"], json.loads(row["detail"])["rule"])
             for row in audit_rows(hub, "ingest_refused")}
    assert {("7A6", "organisation"), (UNREGISTERED, "unregistered")} <= rules


def agency_consent(directive_id: str, patient: str, parent: str, made: datetime) -> dict[str, Any]:
    """A FHIR Consent as a health board's system records it: its own Patient resource (sent before),
    the parent as performer, permitting health services to see the child's records for direct care."""
    return {
        "resourceType": "Consent", "id": directive_id, "meta": {"versionId": "1", "lastUpdated": made.isoformat()},
        # no urn:family-hub:directive identifier: the hub reads the agency's own Consent by its id
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient}"},
        "dateTime": made.isoformat(),
        "performer": [{"reference": f"RelatedPerson/{parent}", "type": "RelatedPerson"}],
        "organization": [{"identifier": {"system": FHIR_ODS_ORGANISATION_SYSTEM, "value": "7A4"}}],
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": {
            "type": "permit",
            "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                            "code": "IRCP"}]},
                       "reference": {"type": "Organization",
                                     "identifier": {"system": "urn:family-hub:sector", "value": "health"}}}],
            "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}]},
    }


def test_consent_an_agency_recorded_waits_for_the_family(registered: RunningHub,
                                                         paediatrics_webhook: AgencyEndpoint) -> None:
    hub = registered
    tag = "t" + uuid.uuid4().hex[:9]
    coordinator = Coordinator(hub, f"cc-origin-{tag}")
    household, (child,) = coordinator.enrol(children=1)
    parent = coordinator._call("POST", f"/v1/households/{household}/members", 201, json={
        "kind": "adult", "relationship": "mother", "parental_responsibility": True})["member_id"]
    j = report_not_sent_journey(datetime.now(UTC), seed=random.randrange(300_000, 900_000), child_id=child,
                                household_id=household)
    events = [e for e in j.before_consent if e.record_type != "IdentityLinked"]
    nhs = next(e.subject for e in events if e.record_type == "ReportIssued").value
    SENT.add(nhs)
    coordinator.link(household, child, "nhs-number", nhs)
    send(hub, events)
    hub.eventually(lambda: (i := paediatric_item(coordinator, household)) and i["status"] == "withheld",
                   "the SLT report withheld from the paediatrician")

    # Cardiff and Vale records the family's consent in its own system and sends it on
    directive_id = f"cav-consent-{tag}"
    cav = {**bearer("agency", "cav-wcp", agency=CAV_SLT["agency_id"]), **FHIR}
    patient = {"resourceType": "Patient", "id": f"cav-pat-{tag}",
               "identifier": [{"system": FHIR_NHS_NUMBER_SYSTEM, "value": nhs}]}
    assert hub.call("POST", "/fhir/Patient", cav, content=json.dumps(patient)).status_code in (200, 201)
    consent = agency_consent(directive_id, f"cav-pat-{tag}", parent, at(0))
    r = hub.call("POST", "/fhir/Consent", cav, content=json.dumps(consent))
    assert r.status_code == 201, r.text

    def listed() -> dict[str, Any] | None:
        """The agency's directive as the hub keeps it: its id scoped to the recording agency."""
        got = coordinator._call("GET", f"/v1/households/{household}/children/{child}/consents")
        return next((d for d in got["directives"] if d["directive_id"].endswith(f":{directive_id}")), None)

    def status() -> str | None:
        found = listed()
        return found["status"] if found else None

    hub.eventually(lambda: status() is not None, "the agency's consent among the child's directives")
    hub.eventually(hub.caught_up, "the workers to catch up")
    time.sleep(2)  # a share made on it would reach the webhook within the delivery timer's next passes
    assert status() == "pending_confirmation"
    (share,) = [s for s in coordinator.shares(household)
                if s["record_type"] == "ReportIssued" and s["recipient_service"] == PAEDIATRICS.service_name]
    assert share["state"] == "withheld"
    assert paediatrics_webhook.received(child) == []

    scoped = listed()["directive_id"]  # type: ignore[index]
    assert scoped != directive_id  # two agencies' Consent ids can never name one directive
    confirm = f"/v1/households/{household}/children/{child}/consents/{scoped}/confirm"
    assert hub.call("POST", confirm, bearer("agency", "cav-wcp", agency="7A4")).status_code == 403
    r = hub.call("POST", confirm, bearer("parent", f"parent-{tag}", household=household, member=parent))
    assert r.status_code == 202, r.text
    hub.eventually(lambda: [d for d in paediatrics_webhook.received(child)
                            if d["json"]["information"].get("report_id") == f"slt-{child}"],
                   "the report at the paediatrician's webhook")
    assert status() == "active"


def test_nothing_sent_about_people_is_kept_in_clear(registered: RunningHub) -> None:
    """A UK Core Patient (name, birth date, NHS number) then an Appointment referring to it in another
    request; then the hub's log and every text column of its database are read for what was sent."""
    hub = registered
    tag, (nhs,) = tag_and_nhs()
    coordinator = Coordinator(hub, f"cc-origin-{tag}")
    household, (child,) = coordinator.enrol(children=1)
    coordinator.link(household, child, "nhs-number", nhs)
    family, given = PATIENT_NAME
    patient = {"resourceType": "Patient", "id": f"pat-{tag}", "meta": {"versionId": "3"},
               "identifier": [{"system": FHIR_NHS_NUMBER_SYSTEM, "value": nhs}],
               "name": [{"family": family, "given": [given]}], "birthDate": PATIENT_BIRTH_DATE}
    abuhb = {**bearer("agency", "abuhb-fhir", agency="7A6"), **FHIR}
    assert hub.call("POST", "/fhir/Patient", abuhb, content=json.dumps(patient)).status_code in (200, 201)
    booked = appointment(f"appt-{tag}", nhs, at(-1), at(21), 30, PAEDIATRICS, "review")
    booked["participant"][0]["actor"] = {"reference": f"Patient/pat-{tag}"}
    r = hub.call("POST", "/fhir/Appointment", abuhb, content=json.dumps(booked))
    assert r.status_code == 201, r.text
    hub.eventually(lambda: ("AppointmentBooked", child, "7A6") in entries(coordinator, household),
                   "the appointment on the child's timeline")
    hub.eventually(hub.caught_up, "the workers to catch up")

    personal = sorted(SENT | {family, given, PATIENT_BIRTH_DATE})
    assert len(personal) >= 8  # every test above ran first and sent its NHS numbers
    data = Path(hub.env["HUB_DATA_DIR"])
    logs = hub.log.read_text(errors="replace") + "".join(p.read_text(errors="replace") for p in data.rglob("*.log"))
    assert "ingest.accepted" in logs  # the hub did log what it accepted
    assert in_database(hub, household) is not None  # the scan reads the tables
    found = {v: column for v in personal if (column := in_database(hub, v))}
    assert [v for v in personal if v in logs] == []
    assert found == {}


def in_database(hub: RunningHub, value: str) -> str | None:
    """The first ``table.column`` of the hub's database whose text holds ``value``, if any."""
    engine = sa.create_engine(hub.env.get("HUB_DATABASE_URL") or f"sqlite:///{hub.env['HUB_DATA_DIR']}/hub.db")
    try:
        meta = sa.MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            for table in meta.sorted_tables:
                for column in table.columns:
                    text = sa.cast(column, sa.Text)
                    hit = conn.execute(sa.select(sa.func.count()).select_from(table).where(
                        text.contains(value))).scalar()
                    if hit:
                        return f"{table.name}.{column.name}"
    finally:
        engine.dispose()
    return None
