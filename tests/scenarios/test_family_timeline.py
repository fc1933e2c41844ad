"""One family, three agencies, one timeline (seed 000: the Evans household, with care coordination).

Cerys (West syndrome) is seen by speech and language therapy at Aneurin Bevan and by Newport's
children's services; her brother Cian is at Maes Ebbw special school and referred to community
paediatrics. Each agency sends its own format. Some events arrive before the coordinator has linked
the children's identifiers: they are parked (the family's timeline shows nothing), then join it in
event-time order when the links are made. One local-authority event is sent twice and is held once;
one appointment is moved by a second version of the same FHIR Appointment and stays one entry.
The family agrees to share the children's records with care coordination (naming social care, so
its outcomes are covered too): without that the coordinator sees the entries' details withheld and
the social-care outcomes not at all (the read policy, consent/rulesets/read-policy.json).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consent import Category, Directive, DirectiveDecision, Grantor, Purpose, Scope
from consent.fhir import directive_to_fhir_dict
from hub.demo.identifiers import nhs_number, upn
from tests.scenarios.agency_payloads import (
    LA_CODE,
    MAES_EBBW,
    PAEDIATRICS,
    SLT,
    appointment,
    la_event,
    referral,
    report,
    school_event,
)
from tests.scenarios.running import Agency, Coordinator, RunningHub, when

pytestmark = pytest.mark.scenario

CWD = "Children with Disabilities Team"
CARE_COORDINATION = "Complex needs care coordination"
HOUSING = "Housing adaptations"
LA = LA_CODE  # Newport City Council


@dataclass
class Evans:
    """What the agencies and the coordinator know about the household (synthetic identifiers)."""

    tag: str
    cerys_nhs: str
    cerys_la_id: str
    cian_nhs: str
    cian_upn: str
    now: datetime

    def at(self, days: float) -> datetime:
        return self.now + timedelta(days=days)

    def sid(self, name: str) -> str:
        return f"{name}-{self.tag}"


@dataclass
class Outcome:
    household: str
    cerys: str
    cian: str
    family: Evans
    slt_appointment: str  # event id
    housing_answers: list[dict[str, Any]]
    parked: set[str]  # event ids of what was sent before the links
    parked_view: list[dict[str, Any]]


@pytest.fixture(scope="module")
def evans(hub: RunningHub) -> Outcome:
    """The journey, run once per cluster; the tests below check what each user sees of it."""
    seed = random.randrange(10_000, 900_000)
    fam = Evans("t" + uuid.uuid4().hex[:9], nhs_number(seed), f"NPT-CS-{seed}", nhs_number(seed + 1), upn(seed + 1),
                datetime.now(UTC).replace(microsecond=0))
    health = Agency(hub, "abuhb-fhir", "7A6")
    council = Agency(hub, "newport-lcs", LA)
    school = Agency(hub, "maes-ebbw-mis", MAES_EBBW.urn)
    coordinator = Coordinator(hub, f"cc-{fam.tag}")
    try:
        household, (cerys, cian) = coordinator.enrol(children=2)

        # before any identifier is linked: these are parked
        early = [
            health.health(referral(fam.sid("slt-referral"), fam.cerys_nhs, fam.at(-148), SLT,
                                   "feeding and communication after West syndrome diagnosis")),
            council.social_care(
                la_event("referral", fam.sid("cwd-referral"), fam.at(-140), fam.cerys_la_id, CWD,
                         reason="support at home"),
                la_event("referral_declined", fam.sid("cwd-declined"), fam.at(-133), fam.cerys_la_id, CWD,
                         reason="below the age criterion")),
            health.health(report(fam.sid("slt-report"), fam.cerys_nhs, fam.at(-75), SLT,
                                 "Feeding and communication assessment")),
            school.education(school_event("school_placement", fam.sid("placement"), fam.at(-160), fam.cian_upn,
                                          MAES_EBBW, phase="secondary", setting_kind="special",
                                          start_date=fam.at(-160).date().isoformat())),
        ]
        parked = {r["event_id"] for answer in early for r in answer["results"]}
        hub.eventually(hub.caught_up, "the workers to process the unlinked events")
        parked_view = coordinator.timeline(household)

        coordinator.link(household, cerys, "nhs-number", fam.cerys_nhs)
        coordinator.link(household, cerys, "la-person-id", fam.cerys_la_id)
        coordinator.link(household, cian, "nhs-number", fam.cian_nhs)
        coordinator.link(household, cian, "upn", fam.cian_upn)

        # after the links
        council.social_care(la_event(
            "social_worker_allocated", fam.sid("cc-allocated"), fam.at(-126), fam.cerys_la_id, CARE_COORDINATION,
            worker={"id": "staff-cc-07", "role": "Care coordinator", "name": "Care coordinator (Newport)"}))
        housing = la_event("housing_assessment", fam.sid("housing"), fam.at(-110), fam.cerys_la_id, HOUSING,
                           reason="steps at home; wheelchair access needed")
        housing_answers = [council.social_care(housing), council.social_care(housing)]
        booked = health.health(appointment(fam.sid("slt-appt"), fam.cerys_nhs, fam.at(-20), fam.at(10), 45, SLT,
                                           "SLT review"))
        health.health(appointment(fam.sid("slt-appt"), fam.cerys_nhs, fam.at(-5), fam.at(17), 45, SLT,
                                  "SLT review", version=2))
        health.health(referral(fam.sid("paeds-referral"), fam.cian_nhs, fam.at(-40), PAEDIATRICS,
                               "developmental review"))
        school.education(school_event(
            "attendance", fam.sid("attendance"), fam.at(-30), fam.cian_upn, MAES_EBBW,
            period_start=fam.at(-90).date().isoformat(), period_end=fam.at(-30).date().isoformat(),
            sessions_possible=120, sessions_attended=110, authorised_absence=8, unauthorised_absence=2))
        for child in (cerys, cian):
            coordinator.consent(household, child, shared_with_coordination(child, fam.now - timedelta(minutes=1)))
        hub.eventually(lambda: len(agency_entries(coordinator, household)) == 10
                       and all(e["visibility"] == "shown" for e in coordinator.timeline(household)),
                       "the ten entries of the household",
                       show=lambda: [(e["child_id"], e["record_type"], e["agency_id"], e["visibility"])
                                     for e in coordinator.timeline(household)])
        return Outcome(household, cerys, cian, fam, booked["results"][0]["event_id"], housing_answers, parked,
                       parked_view)
    finally:
        for agency in (health, council, school):
            agency.close()


def shared_with_coordination(child: str, made_at: datetime) -> dict[str, Any]:
    """The parents' consent: the child's record (not the restricted categories) to care coordination."""
    d = Directive(id=f"coordination-{child}", child_id=child, made_by="parent-evans", made_by_role=Grantor.PARENT,
                  made_at=made_at, decision=DirectiveDecision.PERMIT,
                  scope=Scope(purposes=frozenset({Purpose.CARE_COORDINATION}),
                              categories=frozenset({Category.GENERAL, Category.CLINICAL, Category.SOCIAL_CARE,
                                                    Category.EDUCATION})))
    return directive_to_fhir_dict(d)


def agency_entries(coordinator: Coordinator, household: str, **filters: str) -> list[dict[str, Any]]:
    """The timeline without the family's own consent entries (the directives above)."""
    return [e for e in coordinator.timeline(household, **filters) if e["record_type"] != "ConsentGranted"]


def coordinator_of(hub: RunningHub, outcome: Outcome) -> Coordinator:
    return Coordinator(hub, f"cc-{outcome.family.tag}")


def test_events_sent_before_the_links_were_parked_then_joined_the_family(hub: RunningHub, evans: Outcome) -> None:
    assert len(evans.parked) == 5
    assert evans.parked_view == []  # processed, but about no one the coordinator could see yet
    entries = coordinator_of(hub, evans).timeline(evans.household)
    assert evans.parked <= {e["event_id"] for e in entries}


def test_each_childs_timeline_is_in_event_time_order_with_the_right_agency(hub: RunningHub, evans: Outcome) -> None:
    coordinator = coordinator_of(hub, evans)
    cerys = agency_entries(coordinator, evans.household, child_id=evans.cerys)
    assert [(e["record_type"], e["sector"], e["agency_id"], e["service_name"]) for e in cerys] == [
        ("ReferralMade", "health", "7A6", SLT.service_name),
        ("ReferralMade", "social_care", LA, CWD),
        ("SocialCareOutcome", "social_care", LA, CWD),
        ("KeyProfessionalChanged", "social_care", LA, CARE_COORDINATION),
        ("SocialCareOutcome", "social_care", LA, HOUSING),
        ("ReportIssued", "health", "7A6", SLT.service_name),
        ("AppointmentBooked", "health", "7A6", SLT.service_name),  # moved: dated by its latest version
    ]
    cian = agency_entries(coordinator, evans.household, child_id=evans.cian)
    assert [(e["record_type"], e["sector"], e["agency_id"]) for e in cian] == [
        ("SchoolPlacement", "education", MAES_EBBW.urn),
        ("ReferralMade", "health", "7A6"),
        ("SchoolAttendance", "education", MAES_EBBW.urn),
    ]
    for child in (cerys, cian):
        assert [when(e) for e in child] == sorted(when(e) for e in child)
    household = agency_entries(coordinator, evans.household)
    assert [e["event_id"] for e in household] == [e["event_id"] for e in sorted(cerys + cian, key=when)]
    assert {e["child_id"] for e in household} == {evans.cerys, evans.cian}


def test_a_resent_event_is_one_entry(hub: RunningHub, evans: Outcome) -> None:
    first, again = evans.housing_answers
    assert (first["accepted"], first["duplicates"]) == (1, 0)
    assert (again["accepted"], again["duplicates"]) == (0, 1)
    assert again["results"][0]["event_id"] == first["results"][0]["event_id"]
    housing = coordinator_of(hub, evans).timeline(evans.household, child_id=evans.cerys, kind="SocialCareOutcome")
    assert [e["service_name"] for e in housing].count(HOUSING) == 1


def test_a_rescheduled_appointment_is_updated_not_added(hub: RunningHub, evans: Outcome) -> None:
    coordinator = coordinator_of(hub, evans)
    (entry,) = coordinator.timeline(evans.household, child_id=evans.cerys, kind="AppointmentBooked")
    assert entry["event_id"] == evans.slt_appointment and entry["source_version"] == 2
    (upcoming,) = coordinator.appointments(evans.household)[evans.cerys]
    assert upcoming["service"] == SLT.service_name
    assert when(upcoming, "start") == evans.family.at(17)


def test_the_team_around_each_child(hub: RunningHub, evans: Outcome) -> None:
    coordinator = coordinator_of(hub, evans)
    cerys = {(m["agency_id"], m["service"]): m for m in coordinator.team(evans.household, evans.cerys)}
    # the children's services referral was declined: that team is not around her
    assert set(cerys) == {("7A6", SLT.service_name), (LA, CARE_COORDINATION), (LA, HOUSING)}
    assert cerys[(LA, CARE_COORDINATION)]["professionals"] == {"staff-cc-07": "Care coordinator (Newport)"}
    cian = coordinator.team(evans.household, evans.cian)
    assert {(m["sector"], m["service"]) for m in cian} == {("education", MAES_EBBW.name),
                                                          ("health", PAEDIATRICS.service_name)}


def test_another_coordinator_sees_nothing_of_the_family(hub: RunningHub, evans: Outcome) -> None:
    stranger = Coordinator(hub, "cc-another-caseload")
    r = hub.call("GET", f"/v1/households/{evans.household}/timeline", stranger.auth)
    assert r.status_code == 404
