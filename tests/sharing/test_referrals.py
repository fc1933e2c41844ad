"""One referral, every service: Cerys Evans's coordinator refers her to four services at once. Each part
goes to its own service alone, under the same consent rules as reports; the coordinator sees one referral
with one row per service and its answer; the service that never answers raises the alert. Events are
encoded, decoded, projected and decided exactly as the worker does, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from hub.core.events import InboundEvent
from hub.db.schema import deliveries
from hub.db.store import Store
from hub.demo import scenario
from hub.sharing import coordination, inbox, referrals
from hub.sharing.alerts import list_alerts
from tests.sharing.sharing_support import Feeder, consent_event, deliver, permit_directive

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CERYS = scenario.build(NOW).people[0]
REQ = "referral-evans-1"
SERVICES = [scenario.OT, scenario.SLT, scenario.DIET, scenario.CWD]


def days(n: float) -> datetime:
    return NOW + timedelta(days=n)


@pytest.fixture
def store(db_url: str) -> Store:
    return Store.open(db_url)


def ev(record_type: str, sid: str, at: float, body: dict[str, Any], *, sector: str = "health",
       system: str = "nhs-number") -> InboundEvent:
    return InboundEvent(record_type=record_type, sector=sector, source_system="abuhb-wcp", source_id=sid,  # type: ignore[arg-type]
                        occurred_at=days(at), subject=CERYS.id(system), body=body, mapping="demo@1")


def referral_parts(at: float = -60) -> list[InboundEvent]:
    links = [e for e in scenario.build(NOW).events if e.record_type == "IdentityLinked"
             and e.body["child_id"] == CERYS.child_id]
    return links + [ev("ReferralMade", f"{REQ}/{n}", at, {
        "service": s, "referrer_service": scenario.CARE_COORD, "reason": "West syndrome: feeding, development, home",
        "pathway": "single point of access", "requisition": REQ}) for n, s in enumerate(SERVICES)]


def shares(store: Store) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(deliveries).where(deliveries.c.kind == "share"))]


def test_each_part_of_the_referral_goes_to_its_own_service_alone_as_consent_allows(store: Store) -> None:
    feeder = Feeder(store, NOW)
    feeder.feed(referral_parts(), NOW)
    by_service = {s["service"]: s for s in shares(store)}
    assert set(by_service) == {s["service_name"] for s in SERVICES}  # no family copy, no other recipient
    assert by_service["Children with Disabilities Team"]["state"] == "queued"  # the coordinator's own council
    health = [by_service[s["service_name"]] for s in SERVICES[:3]]
    assert {s["state"] for s in health} == {"withheld"}  # another agency: not without the family's consent
    assert all("consent" in (s["why"] or "") for s in health)

    directive = permit_directive("consent-evans-health", CERYS.child_id, days(-59))
    feeder.feed([consent_event(directive, CERYS.id("nhs-number"))], NOW)
    deliver(store, NOW)
    got, _ = inbox.inbox(store, scenario.OT["agency_id"], now=NOW, limit=100)
    parts = [g["content"] for g in got if g["kind"] == "share"]
    assert sorted(p["recipient"]["service"] for p in parts) == sorted(s["service_name"] for s in SERVICES[:3])
    ot = next(p for p in parts if p["recipient"]["service"] == scenario.OT["service_name"])
    assert ot["information"]["kind"] == "referral" and ot["information"]["requisition"] == REQ
    assert ot["information"]["producer"]["service_name"] == scenario.CARE_COORD["service_name"]
    assert "West syndrome" not in str(ot)  # least data: no free text


def test_the_coordinator_sees_one_referral_with_each_services_answer_and_silence_raises_the_alert(
        store: Store) -> None:
    feeder = Feeder(store, NOW)
    answers = [
        ev("ReferralOutcome", "ot-answer", -55, {"service": scenario.OT, "referral_id": f"{REQ}/0",
                                                 "outcome": "accepted"}),
        ev("WaitingListEntered", "slt-wait", -50, {"service": scenario.SLT, "estimated_wait_days": 120}),
        ev("ReferralOutcome", "diet-answer", -52, {"service": scenario.DIET, "referral_id": f"{REQ}/2",
                                                   "outcome": "declined", "reason": "seen by the ward dietitian",
                                                   "reason_shareable": True}),
    ]
    feeder.feed(referral_parts() + answers, NOW)
    coordination.sweep(store, days(-1))

    (one,) = referrals.referrals(store, CERYS.household_id)
    assert one["referral_id"] == REQ and one["child_id"] == CERYS.child_id
    rows = {r["service"]["service_name"]: r for r in one["services"]}
    assert rows["Occupational therapy, Serennu"]["answer"] == "accepted"
    assert (rows["Speech and language therapy, Serennu"]["answer"],
            rows["Speech and language therapy, Serennu"]["estimated_wait_days"]) == ("waiting_list", 120)
    assert (rows["Dietetics, Serennu"]["answer"], rows["Dietetics, Serennu"]["reason"]) == (
        "declined", "seen by the ward dietitian")
    silent = rows["Children with Disabilities Team"]
    assert silent["answer"] == "no_answer" and silent["alert"] is not None
    assert "Children with Disabilities Team" in silent["alert"]["message"]
    assert [a["details"]["event_id"] for a in list_alerts(store, kind="referral_unanswered")] == [silent["event_id"]]
    with pytest.raises(Exception, match="no such referral"):
        referrals.referral(store, "household-lewis", REQ)  # another household's referral is not found


def test_an_outcome_from_another_agency_naming_a_part_does_not_answer_it(store: Store) -> None:
    # the health board's therapy service names the council's part of the referral (a mistake in its system, or
    # worse): the council's team has not answered, the coordinator must not read that it declined, and the
    # alert for its silence still stands
    assert scenario.SLT["agency_id"] != scenario.CWD["agency_id"]
    feeder = Feeder(store, NOW)
    spoof = ev("ReferralOutcome", "slt-names-cwd", -50, {"service": scenario.SLT, "referral_id": f"{REQ}/3",
                                                         "outcome": "declined", "reason": "not for us"})
    own = ev("ReferralOutcome", "ot-answer", -55, {"service": scenario.OT, "referral_id": f"{REQ}/0",
                                                   "outcome": "accepted"})
    feeder.feed([*referral_parts(), spoof, own], NOW)
    coordination.sweep(store, days(-1))
    (one,) = referrals.referrals(store, CERYS.household_id)
    rows = {r["service"]["service_name"]: r for r in one["services"]}
    assert rows["Children with Disabilities Team"]["answer"] == "no_answer"
    assert rows["Children with Disabilities Team"]["alert"] is not None
    assert rows["Occupational therapy, Serennu"]["answer"] == "accepted"  # its own agency's outcome answers it
    unanswered = {a["details"]["service"] for a in list_alerts(store, kind="referral_unanswered")}
    assert "Children with Disabilities Team" in unanswered and "Occupational therapy, Serennu" not in unanswered
