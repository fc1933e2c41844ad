""""They haven't sent me the report" (seed 000, §3.1 and §5.7.8), end to end through `hub up`.

A speech and language therapist in Cardiff and Vale (7A4) issues a report about a child whose
community paediatrician is in Aneurin Bevan (7A6), with an appointment in five days. The report
crosses an organisational boundary and the family has not said it may be shared, so the hub
withholds it. The coordinator's readiness view for the paediatric appointment says so, why, and
what unblocks it; the family gives consent; the report reaches the paediatrician's webhook once,
signed, before the appointment, and the paediatrician's inbox holds it once. Then a family that
permits all health services but never a named registrar: the service's copy says who it must not
be shown to.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pytest

from consent import Directive, DirectiveDecision, Grantor, Provision, Purpose, Scope, Sector
from consent.fhir import directive_to_fhir_dict
from hub.core.events import InboundEvent
from hub.demo.journey import ABUHB_PAEDS, CAV_SLT, ReportJourney, report_not_sent_journey
from hub.sharing.delivery import verify
from tests.scenarios.running import PAEDIATRICS_SECRET, AgencyEndpoint, Coordinator, RunningHub, when
from tests.support import bearer

pytestmark = pytest.mark.scenario
PAEDIATRICS = ABUHB_PAEDS["service_name"]


def as_sent(event: InboundEvent) -> dict[str, Any]:
    """An event in the hub's own shape (``POST /v1/events``), as an agency system serialises it."""
    return json.loads(json.dumps({
        "record_type": event.record_type, "sector": event.sector, "source_system": event.source_system,
        "source_id": event.source_id, "source_version": event.source_version,
        "occurred_at": event.occurred_at.isoformat(), "category": event.category, "status": event.status,
        "subject": {"system": event.subject.system, "value": event.subject.value}, "body": event.body,
    }, default=lambda v: v.isoformat()))


@dataclass
class Journey:
    journey: ReportJourney
    household: str
    child: str
    coordinator: Coordinator
    report_id: str
    nhs_number: str
    withheld: dict[str, Any]  # the readiness item before consent
    shares_before: list[dict[str, Any]]
    webhook_before: int
    consent_answer: dict[str, Any]


def send(hub: RunningHub, events: list[InboundEvent]) -> None:
    """Each health board's system sends its own events."""
    by_board: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        board = CAV_SLT["agency_id"] if e.source_system.startswith("cav") else ABUHB_PAEDS["agency_id"]
        by_board.setdefault(board, []).append(as_sent(e))
    for board, batch in by_board.items():
        r = hub.call("POST", "/v1/events", bearer("agency", f"{board}-wcp", agency=board), json=batch)
        assert r.status_code == 200 and {a["status"] for a in r.json()} == {"accepted"}, r.text


def paediatric_item(coordinator: Coordinator, household: str) -> dict[str, Any] | None:
    """The SLT report as the readiness view shows it for the paediatric appointment."""
    for child in coordinator.readiness(household)["children"]:
        for appt in child["appointments"]:
            if appt["service"] == PAEDIATRICS:
                for item in appt["reports"]:
                    if item["record_type"] == "ReportIssued":
                        return {**item, "appointment_start": appt["start"]}
    return None


@pytest.fixture(scope="module")
def journey(hub: RunningHub, paediatrics_webhook: AgencyEndpoint) -> Journey:
    tag = "t" + uuid.uuid4().hex[:9]
    coordinator = Coordinator(hub, f"cc-{tag}")
    household, (child,) = coordinator.enrol(children=1)
    j = report_not_sent_journey(datetime.now(UTC), seed=random.randrange(300_000, 900_000), child_id=child,
                                household_id=household)
    agency_events = [e for e in j.before_consent if e.record_type != "IdentityLinked"]
    nhs = next(e.subject for e in agency_events if e.record_type == "ReportIssued")
    coordinator.link(household, child, nhs.system, nhs.value)
    send(hub, agency_events)

    withheld = hub.eventually(lambda: (i := paediatric_item(coordinator, household)) and i["status"] != "not_decided"
                              and i, "the SLT report to be decided for the paediatrician")
    shares_before = coordinator.shares(household)
    webhook_before = len(paediatrics_webhook.received(child))

    parent = bearer("parent", f"parent-{tag}", household=household)
    consent = json.loads(j.consent[0].body["fhir_consent"])
    r = hub.call("POST", f"/v1/households/{household}/children/{child}/consents", parent, json=consent)
    assert r.status_code == 202, r.text
    hub.eventually(lambda: [d for d in paediatrics_webhook.received(child)
                            if d["json"]["information"].get("report_id") == f"slt-{child}"],
                   "the report at the paediatrician's webhook")
    return Journey(j, household, child, coordinator, f"slt-{child}", nhs.value, withheld, shares_before,
                   webhook_before, r.json())


def test_before_consent_the_coordinator_sees_the_report_withheld_and_why(journey: Journey) -> None:
    item = journey.withheld
    assert item["status"] == "withheld"
    assert item["producer"] == CAV_SLT["service_name"]
    # the family has not agreed to share with care coordination: the coordinator sees that the report
    # exists, from whom, and why it is withheld from the paediatrician, not its title (the read policy)
    assert (item["title"], item["visibility"], item["reason_code"]) == (
        "details withheld", "redacted", "READ-coordinator-no-consent")
    assert "consent" in item["why"], item["why"]  # why: the recipient is in another organisation, no consent
    assert item["unblock"] == f"ask the family for consent to share with {PAEDIATRICS}"
    assert when(item, "appointment_start") == journey.journey.appointment_start
    (share,) = [s for s in journey.shares_before
                if s["record_type"] == "ReportIssued" and s["recipient_service"] == PAEDIATRICS]
    assert share["outcome"] != "permit" and share["state"] == "withheld"
    assert journey.webhook_before == 0  # nothing reached the paediatrician before the family agreed


def test_after_consent_the_report_reaches_the_paediatrician_once_before_the_appointment(
        hub: RunningHub, journey: Journey, paediatrics_webhook: AgencyEndpoint) -> None:
    assert journey.consent_answer["directive_id"] == journey.journey.directive_id
    time.sleep(2)  # anything more would arrive within the delivery timer's next passes
    (delivery,) = [d for d in paediatrics_webhook.received(journey.child)
                   if d["json"]["information"].get("report_id") == journey.report_id]
    assert verify(PAEDIATRICS_SECRET, delivery["body"], delivery["headers"], now=delivery["at"])
    assert delivery["json"]["decision"]["basis"] == "consent"
    assert delivery["at"] < journey.journey.appointment_start.timestamp()
    raw = delivery["body"].decode()
    assert journey.nhs_number not in raw and journey.household not in raw  # least data: the hub's child id only

    item = hub.eventually(lambda: (i := paediatric_item(journey.coordinator, journey.household))
                          and i["status"] == "will_see" and i, "the readiness view to show the report as seen")
    assert item["unblock"] is None


def test_the_paediatricians_inbox_holds_the_report_once_and_takes_an_acknowledgement(
        hub: RunningHub, journey: Journey, paediatrics_webhook: AgencyEndpoint) -> None:
    paediatrician = bearer("agency", "abuhb-paediatrics", agency=ABUHB_PAEDS["agency_id"])
    inbox = hub.call("GET", f"/v1/agencies/{ABUHB_PAEDS['agency_id']}/inbox", paediatrician,
                     params={"limit": 500}).json()["items"]
    (item,) = [i for i in inbox if i["kind"] == "share" and i["content"]["child_id"] == journey.child
               and i["content"]["information"].get("report_id") == journey.report_id]
    (delivery,) = [d for d in paediatrics_webhook.received(journey.child)
                   if d["json"]["information"].get("report_id") == journey.report_id]
    assert delivery["headers"]["Idempotency-Key"] == item["delivery_id"]
    ack = hub.call("POST", f"/v1/agencies/{ABUHB_PAEDS['agency_id']}/inbox/{item['delivery_id']}/ack",
                   paediatrician)
    assert ack.status_code == 200 and ack.json()["state"] == "acknowledged"
    other_board = bearer("agency", "cav-slt", agency=CAV_SLT["agency_id"])
    assert hub.call("POST", f"/v1/agencies/{CAV_SLT['agency_id']}/inbox/{item['delivery_id']}/ack",
                    other_board).status_code == 404


def test_a_later_report_from_the_same_service_reaches_only_the_team_and_no_other_agency(
        hub: RunningHub, journey: Journey, paediatrics_webhook: AgencyEndpoint) -> None:
    """Once the hub has read the child's record, a further report from a service already in the team is decided
    from what it kept of the child (its view), not from the whole record again: it must reach the paediatrician
    the consent permits, once, and no agency outside the team, nor the producing service itself."""
    first = next(e for e in journey.journey.before_consent if e.record_type == "ReportIssued")
    second_id = f"{journey.report_id}-review"
    send(hub, [replace(first, source_id=second_id, occurred_at=datetime.now(UTC),
                       body={**first.body, "report_id": second_id, "title": "SLT review"})])
    hub.eventually(lambda: [d for d in paediatrics_webhook.received(journey.child)
                            if d["json"]["information"].get("report_id") == second_id],
                   "the later report at the paediatrician's webhook")
    time.sleep(2)  # anything more would arrive within the delivery timer's next passes
    assert len([d for d in paediatrics_webhook.received(journey.child)
                if d["json"]["information"].get("report_id") == second_id]) == 1
    for agency in (CAV_SLT["agency_id"], "W06000022-S3"):  # the producing board; a school outside the team
        r = hub.call("GET", f"/v1/agencies/{agency}/inbox", bearer("agency", f"{agency}-reader", agency=agency),
                     params={"limit": 500})
        assert r.status_code == 200, r.text
        assert not [i for i in r.json()["items"] if i["content"].get("child_id") == journey.child], agency
    assert hub.call("GET", f"/v1/agencies/{ABUHB_PAEDS['agency_id']}/inbox", {}).status_code == 401  # no token


def test_permit_all_health_but_never_a_named_registrar(hub: RunningHub, paediatrics_webhook: AgencyEndpoint) -> None:
    """The family's consent, sent through the consent API as a FHIR Consent with a nested exception
    (``Practitioner/<id>``), reaches the paediatric service with the registrar named as one it must
    not be shown to; the readiness view says the registrar's appointment will go without it."""
    tag = "t" + uuid.uuid4().hex[:9]
    coordinator = Coordinator(hub, f"cc-{tag}")
    household, (child,) = coordinator.enrol(children=1)
    now = datetime.now(UTC)
    j = report_not_sent_journey(now, seed=random.randrange(300_000, 900_000), child_id=child, household_id=household)
    agency_events = [e for e in j.before_consent if e.record_type != "IdentityLinked"]
    nhs = next(e.subject for e in agency_events if e.record_type == "ReportIssued")
    registrar = {"id": f"reg-{tag}", "role": "registrar", "display_name": "Dr Bowen"}
    agency_events.append(InboundEvent(
        record_type="AppointmentBooked", sector="health", source_system="abuhb-wcp", source_id=f"appt-reg-{tag}",
        occurred_at=now, subject=nhs, body={"service": ABUHB_PAEDS, "professional": registrar,
                                            "start": j.appointment_start, "contact_type": "follow_up"}))
    coordinator.link(household, child, nhs.system, nhs.value)
    send(hub, agency_events)
    hub.eventually(lambda: (i := paediatric_item(coordinator, household)) and i["status"] != "not_decided",
                   "the SLT report to be decided for the paediatric service")

    health = Scope(sectors=frozenset({Sector.HEALTH}), purposes=frozenset({Purpose.DIRECT_CARE}))
    directive = Directive(
        id=f"consent-{tag}", child_id=child, made_by=f"parent-{tag}", made_by_role=Grantor.PARENT, made_at=now,
        decision=DirectiveDecision.PERMIT, scope=health,
        exceptions=(Provision(DirectiveDecision.DENY, Scope(sectors=health.sectors, purposes=health.purposes,
                                                             professional_ids=frozenset({registrar["id"]}))),))
    r = hub.call("POST", f"/v1/households/{household}/children/{child}/consents",
                 bearer("parent", f"parent-{tag}", household=household), json=directive_to_fhir_dict(directive))
    assert r.status_code == 202, r.text
    (share,) = hub.eventually(lambda: [d for d in paediatrics_webhook.received(child)
                                       if d["json"]["information"].get("report_id") == f"slt-{child}"],
                              "the report at the paediatric service's webhook")
    assert share["json"]["kind"] == "share" and share["json"]["not_for_professionals"] == [registrar["id"]]
    assert "professional_id" not in share["json"]["recipient"]  # the service's copy, everyone else may see it

    def registrar_item() -> dict[str, Any] | None:
        for c in coordinator.readiness(household)["children"]:
            for appt in c["appointments"]:
                if appt["professional_id"] == registrar["id"]:
                    return next(i for i in appt["reports"] if i["record_type"] == "ReportIssued")
        return None

    item = registrar_item()
    assert item is not None and item["status"] == "withheld"
    assert item["unblock"] == f"ask the family for consent to share with Dr Bowen ({PAEDIATRICS})"
