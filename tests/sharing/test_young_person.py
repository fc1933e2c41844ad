"""The young person: from 16 (or recorded competence) their own copies and their own directives; parents'
directives flagged for them to confirm. The age comes from enrolment; real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from consent import Directive, DirectiveDecision, Grantor, Purpose, Scope, Sector
from consent.fhir import directive_to_fhir_dict
from hub.core.errors import ValidationError
from hub.core.events import InboundEvent
from hub.db.schema import deliveries
from hub.db.store import Store
from hub.demo.journey import ABUHB_PAEDS, ReportJourney, report_not_sent_journey
from hub.family.enrolment import Enrolment
from hub.sharing import consents
from tests.sharing.sharing_support import Feeder, stored_deliveries

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(db_url: str) -> Store:
    return Store.open(db_url)


def enrol_child(store: Store, born: date | None, competent_from: date | None = None) -> tuple[str, str]:
    enrol = Enrolment(store, None)  # type: ignore[arg-type]  # no identifiers linked through it here
    household = enrol.create_household("coord-yp")
    child = enrol.add_member(household, "child", "child", date_of_birth=born, competent_from=competent_from)
    return household, child.member_id


def journey_for(store: Store, born: date | None, seed: int, competent_from: date | None = None) -> ReportJourney:
    household, child = enrol_child(store, born, competent_from)
    return report_not_sent_journey(NOW, seed=seed, child_id=child, household_id=household)


def share(store: Store, j: ReportJourney, recipient_key: str) -> dict[str, Any]:
    found = stored_deliveries(store, deliveries.c.kind == "share", deliveries.c.recipient_key == recipient_key)
    (row,) = [d for d in found if f"slt-{j.child_id}" in d["payload"]]
    return row


def young_persons_directive(j: ReportJourney, made_at: datetime,
                            decision: DirectiveDecision = DirectiveDecision.PERMIT) -> InboundEvent:
    d = Directive(id=f"yp-{j.child_id}", child_id=j.child_id, made_by=j.child_id, made_by_role=Grantor.YOUNG_PERSON,
                  made_at=made_at, decision=decision,
                  scope=Scope(sectors=frozenset({Sector.HEALTH}), purposes=frozenset({Purpose.DIRECT_CARE})))
    return InboundEvent(record_type="ConsentGranted", sector="family", source_system="hub-consent", source_id=d.id,
                        occurred_at=made_at, subject=j.subject,
                        body={"directive_id": d.id, "granted_by": "young_person",
                              "fhir_consent": json.dumps(directive_to_fhir_dict(d))})


def paeds_key() -> str:
    return f"service:{ABUHB_PAEDS['agency_id']}:{ABUHB_PAEDS['service_name']}"


def test_a_seventeen_year_old_gets_their_own_copy_and_their_consent_decides(store: Store) -> None:
    j = journey_for(store, date(2009, 1, 15), seed=501)
    feeder = Feeder(store, NOW)
    feeder.feed(j.before_consent, NOW)
    mine = share(store, j, f"family:young_person:{j.child_id}")
    assert mine["state"] == "queued"  # the young person's right of access to their own record
    parents = share(store, j, f"family:parents:{j.household_id}")
    assert parents["state"] == "queued"  # not a restricted category: the rule set keeps the parents' copy

    feeder.feed([young_persons_directive(j, NOW + timedelta(minutes=1))], NOW + timedelta(minutes=1))
    assert share(store, j, paeds_key())["state"] == "queued"  # their own consent, at 17


def test_a_young_persons_refusal_beats_the_parents_permission_they_were_asked_to_confirm(store: Store) -> None:
    j = journey_for(store, date(2009, 1, 15), seed=507)
    feeder = Feeder(store, NOW)
    feeder.feed(j.before_consent + j.consent, NOW)
    assert share(store, j, paeds_key())["state"] == "queued"  # the parents' directive stands until confirmed
    (listed,) = consents.list_directives(store, j.household_id, j.child_id, today=NOW.date())
    assert listed["needs_young_person_confirmation"] is True
    later = NOW + timedelta(minutes=1)
    feeder.feed([young_persons_directive(j, later, decision=DirectiveDecision.DENY)], later)
    refused = share(store, j, paeds_key())
    assert refused["state"] == "cancelled" and "R5-directive-deny" in refused["why"]


def test_under_sixteen_the_parents_decide_and_a_young_persons_directive_is_not_in_force(store: Store) -> None:
    j = journey_for(store, date(2014, 6, 1), seed=502)
    feeder = Feeder(store, NOW)
    feeder.feed(j.before_consent, NOW)
    assert share(store, j, f"family:young_person:{j.child_id}")["state"] == "withheld"
    assert share(store, j, f"family:parents:{j.household_id}")["state"] == "queued"
    feeder.feed([young_persons_directive(j, NOW + timedelta(minutes=1))], NOW + timedelta(minutes=1))
    assert share(store, j, paeds_key())["state"] == "withheld"
    feeder.feed(j.consent, NOW + timedelta(minutes=2))
    assert share(store, j, paeds_key())["state"] == "queued"


def test_recorded_competence_lets_a_fourteen_year_old_decide(store: Store) -> None:
    j = journey_for(store, date(2011, 9, 1), seed=503, competent_from=date(2025, 11, 1))
    feeder = Feeder(store, NOW)
    feeder.feed([*j.before_consent, young_persons_directive(j, NOW)], NOW)
    assert share(store, j, paeds_key())["state"] == "queued"


def test_the_consent_api_refuses_a_young_persons_directive_before_sixteen(store: Store) -> None:
    j = journey_for(store, date(2014, 6, 1), seed=504)
    Feeder(store, NOW).feed(j.before_consent, NOW)  # the child is linked and known
    body = json.loads(young_persons_directive(j, NOW).body["fhir_consent"])
    no_ingest: Any = None  # refused before anything is accepted
    with pytest.raises(ValidationError) as err:
        asyncio.run(consents.grant(store, no_ingest, j.household_id, j.child_id, body, now=NOW))
    (problem,) = err.value.problems
    assert problem.location == "/performer"
    assert "from 16, or earlier once recorded as competent" in problem.message
    assert consents.list_directives(store, j.household_id, j.child_id) == []


def test_parents_directives_are_flagged_for_the_young_person_to_confirm_at_sixteen(store: Store) -> None:
    j = journey_for(store, date(2010, 3, 20), seed=505)
    feeder = Feeder(store, NOW)
    feeder.feed(j.before_consent + j.consent, NOW)  # made by a parent while the child was 15
    before = consents.list_directives(store, j.household_id, j.child_id, today=date(2026, 3, 19))
    assert [d["needs_young_person_confirmation"] for d in before] == [False]
    after = consents.list_directives(store, j.household_id, j.child_id, today=date(2026, 3, 20))
    assert [(d["directive_id"], d["needs_young_person_confirmation"]) for d in after] == [(j.directive_id, True)]


def test_a_child_enrolled_without_a_birth_date_is_treated_as_under_sixteen(store: Store) -> None:
    j = journey_for(store, None, seed=506)
    feeder = Feeder(store, NOW)
    feeder.feed(j.before_consent, NOW)
    assert share(store, j, f"family:young_person:{j.child_id}")["state"] == "withheld"
    assert share(store, j, f"family:parents:{j.household_id}")["state"] == "queued"
