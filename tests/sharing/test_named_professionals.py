"""Decisions per named professional, on real SQLite and PostgreSQL: "permit all health, but never to
this named professional", "only to Dr X", and a refusal arriving after the service holds a copy.

Rhys's paediatric service (Aneurin Bevan) has two named paediatricians in his records: Dr Ahmed
(consultant) and Dr Bowen (registrar), each with an appointment booked. The SLT report from
Cardiff and Vale crosses an organisational boundary, so it waits for the family's consent.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from consent import Directive, DirectiveDecision, Grantor, Provision, Purpose, Scope, Sector
from hub.core.events import InboundEvent
from hub.db.schema import share_decisions
from hub.db.store import Store
from hub.demo.journey import ABUHB_PAEDS, ReportJourney, report_not_sent_journey
from hub.sharing import delivery, readiness
from tests.sharing.sharing_support import Feeder, Webhook, consent_event, deliver, stored_deliveries, withdraw_event
from tests.support import wait_until

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PAEDS = ABUHB_PAEDS["service_name"]
AHMED = {"id": "paed-ahmed", "role": "consultant", "display_name": "Dr Ahmed"}
BOWEN = {"id": "paed-bowen", "role": "registrar", "display_name": "Dr Bowen"}


@pytest.fixture
def store(db_url: str) -> Store:
    return Store.open(db_url)


def journey(seed: int) -> tuple[ReportJourney, list[InboundEvent]]:
    j = report_not_sent_journey(NOW, seed=seed, child_id=f"child-{seed}", household_id=f"hh-{seed}")
    booked = [InboundEvent(record_type="AppointmentBooked", sector="health", source_system="abuhb-wcp",
                           source_id=f"appt-{who['id']}-{seed}", occurred_at=NOW - timedelta(days=2),
                           subject=j.subject, body={"service": ABUHB_PAEDS, "professional": who,
                                                    "start": NOW + timedelta(days=days), "contact_type": "follow_up"})
              for who, days in ((AHMED, 4), (BOWEN, 6))]
    return j, j.before_consent + booked


def directive(directive_id: str, child_id: str, made_at: datetime, decision: DirectiveDecision, scope: Scope,
              exceptions: tuple[Provision, ...] = ()) -> Directive:
    return Directive(id=directive_id, child_id=child_id, made_by="parent-1", made_by_role=Grantor.PARENT,
                     made_at=made_at, decision=decision, scope=scope, exceptions=exceptions)


HEALTH_CARE = Scope(sectors=frozenset({Sector.HEALTH}), purposes=frozenset({Purpose.DIRECT_CARE}))


def rows(store: Store, table: sa.Table) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(table))]


def slt_rows(store: Store, recipient_key_part: str, kind: str = "share") -> list[dict[str, Any]]:
    return [d for d in stored_deliveries(store) if d["kind"] == kind and recipient_key_part in d["recipient_key"]
            and json.loads(d["payload"])["information"].get("report_id", "").startswith("slt-")]


def appointment_item(store: Store, household: str, professional_id: str) -> dict[str, Any]:
    view = readiness.readiness(store, household, NOW)
    (appt,) = [a for a in view["children"][0]["appointments"] if a["professional_id"] == professional_id]
    (item,) = [i for i in appt["reports"] if i["record_type"] == "ReportIssued"]
    return dict(item)


def test_never_to_this_named_professional_then_a_refusal_after_delivery(store: Store) -> None:
    feeder = Feeder(store, NOW)
    j, before = journey(401)
    feeder.feed(before, NOW)
    assert not [d for d in rows(store, share_decisions) if d["recipient_key"].startswith("professional:")], \
        "no directive names anyone: professionals follow their service, no rows of their own"

    # permit all health for direct care, but never to Dr Bowen
    t1 = NOW + timedelta(minutes=10)
    d1 = directive("consent-401-health", j.child_id, t1, DirectiveDecision.PERMIT, HEALTH_CARE, (
        Provision(DirectiveDecision.DENY, Scope(sectors=frozenset({Sector.HEALTH}),
                                                purposes=frozenset({Purpose.DIRECT_CARE}),
                                                professional_ids=frozenset({BOWEN["id"]}))),))
    r = feeder.feed([consent_event(d1, j.subject)], t1)
    assert r.queued == 2  # the report and the assessment, to the service
    (service_share,) = slt_rows(store, f"service:7A6:{PAEDS}")
    assert service_share["state"] == "queued"
    assert json.loads(service_share["payload"])["not_for_professionals"] == [BOWEN["id"]]
    (bowen_share,) = slt_rows(store, BOWEN["id"])
    assert bowen_share["state"] == "withheld" and bowen_share["recipient_key"] == \
        f"professional:7A6:{PAEDS}:{BOWEN['id']}"
    assert not slt_rows(store, AHMED["id"]), "Dr Ahmed is covered by the service's decision"
    bowen_decisions = [d for d in rows(store, share_decisions) if d["recipient_key"] == bowen_share["recipient_key"]]
    assert {(d["outcome"], d["current"]) for d in bowen_decisions} == {("deny", True)}
    assert all(d1.id in json.loads(d["directive_ids"]) for d in bowen_decisions)

    assert appointment_item(store, j.household_id, AHMED["id"])["status"] == "on_its_way"
    states = [r for r in delivery.recipient_states(store, j.household_id, j.child_id)
              if r["record_type"] == "ReportIssued" and r["recipient_service"] == PAEDS]
    assert sorted((r["recipient_professional"] or "", r["outcome"], r["state"]) for r in states) == [
        ("", "permit", "queued"), (BOWEN["id"], "deny", "withheld")]  # the coordinator's view of the shares
    bowen_item = appointment_item(store, j.household_id, BOWEN["id"])
    assert bowen_item["status"] == "withheld"
    assert bowen_item["unblock"] == f"ask the family for consent to share with Dr Bowen ({PAEDS})"

    hook = Webhook()
    try:
        delivery.set_webhook(store, "7A6", hook.url, "s3cret-shared")
        deliver(store, t1 + timedelta(seconds=1))
        bodies = [json.loads(q["body"]) for q in hook.requests]
        slt = [b for b in bodies if b["information"].get("report_id") == f"slt-{j.child_id}"]
        assert [(b["kind"], b["not_for_professionals"]) for b in slt] == [("share", [BOWEN["id"]])]
        assert not [b for b in bodies if b["recipient"].get("professional_id") == BOWEN["id"]]
        assert appointment_item(store, j.household_id, AHMED["id"])["status"] == "will_see"

        # later: never to Dr Ahmed either — the service already holds a copy, so it is told, once
        t2 = t1 + timedelta(hours=1)
        d2 = directive("consent-401-not-ahmed", j.child_id, t2, DirectiveDecision.DENY,
                       Scope(professional_ids=frozenset({AHMED["id"]})))
        r = feeder.feed([consent_event(d2, j.subject)], t2)
        assert r.notices == 2 and r.queued == 0
        assert feeder.feed([consent_event(d2, j.subject)], t2).notices == 0  # a resent consent: no second notice
        sent_before = len(hook.requests)
        deliver(store, t2 + timedelta(seconds=1))
        new = [json.loads(q["body"]) for q in hook.requests[sent_before:]]
        notice = next(b for b in new if b["information"].get("report_id") == f"slt-{j.child_id}")
        assert notice["kind"] == "withdrawal_notice" and notice["recipient"]["professional_id"] == AHMED["id"]
        assert "Do not show this information to them" in notice["notice"]
        assert all(b["kind"] == "withdrawal_notice" for b in new)  # the service's own copy is not re-sent
        assert appointment_item(store, j.household_id, AHMED["id"])["status"] == "withheld"

        # the family lifts it: a share addressed to Dr Ahmed tells the service he may see it again
        t3 = t2 + timedelta(hours=1)
        feeder.feed([withdraw_event(d2.id, j.subject, t3)], t3)
        (ahmed_share,) = slt_rows(store, AHMED["id"])
        assert ahmed_share["state"] == "queued"
        sent_before = len(hook.requests)
        deliver(store, t3 + timedelta(seconds=1))
        again = [json.loads(q["body"]) for q in hook.requests[sent_before:]
                 if json.loads(q["body"])["information"].get("report_id") == f"slt-{j.child_id}"]
        assert [(b["kind"], b["recipient"].get("professional_id")) for b in again] == [("share", AHMED["id"])]
        assert appointment_item(store, j.household_id, AHMED["id"])["status"] == "will_see"
        assert appointment_item(store, j.household_id, BOWEN["id"])["status"] == "withheld"
    finally:
        hook.close()


def test_only_to_a_named_professional(store: Store) -> None:
    feeder = Feeder(store, NOW)
    j, before = journey(402)
    d = directive("consent-402-ahmed", j.child_id, NOW, DirectiveDecision.PERMIT,
                  Scope(professional_ids=frozenset({AHMED["id"]}), purposes=frozenset({Purpose.DIRECT_CARE})))
    feeder.feed([*before, consent_event(d, j.subject)], NOW)
    (service_share,) = slt_rows(store, f"service:7A6:{PAEDS}")
    assert service_share["state"] == "withheld" and "R3-default-deny" in service_share["why"]
    (ahmed_share,) = slt_rows(store, AHMED["id"])
    assert ahmed_share["state"] == "queued"
    assert not slt_rows(store, BOWEN["id"]), "Dr Bowen is refused like his service: no rows of his own"

    bowen_item = appointment_item(store, j.household_id, BOWEN["id"])
    assert bowen_item["status"] == "withheld"
    assert bowen_item["unblock"] == f"ask the family for consent to share with {PAEDS}"
    assert appointment_item(store, j.household_id, AHMED["id"])["status"] == "on_its_way"

    # no webhook: the agency reads its inbox; the share names the one professional it is for
    items, _ = delivery.inbox(store, "7A6", limit=100, now=NOW)
    slt = [i["content"] for i in items if i["content"]["information"].get("report_id") == f"slt-{j.child_id}"]
    assert [(c["kind"], c["recipient"].get("professional_id")) for c in slt] == [("share", AHMED["id"])]
    assert appointment_item(store, j.household_id, AHMED["id"])["status"] == "will_see"

    # withdrawn before anything else: Dr Ahmed's copy is followed by a notice, the service stays withheld
    later = NOW + timedelta(hours=1)
    r = feeder.feed([withdraw_event(d.id, j.subject, later)], later)
    assert r.notices == 2
    (notice,) = slt_rows(store, AHMED["id"], kind="withdrawal_notice")
    assert json.loads(notice["payload"])["recipient"]["professional_id"] == AHMED["id"]
    assert slt_rows(store, f"service:7A6:{PAEDS}")[0]["state"] == "withheld"


def test_a_role_can_be_refused(store: Store) -> None:
    feeder = Feeder(store, NOW)
    j, before = journey(403)
    d = directive("consent-403", j.child_id, NOW, DirectiveDecision.PERMIT, HEALTH_CARE, (
        Provision(DirectiveDecision.DENY, Scope(sectors=frozenset({Sector.HEALTH}),
                                                purposes=frozenset({Purpose.DIRECT_CARE}),
                                                roles=frozenset({"registrar"}))),))
    feeder.feed([*before, consent_event(d, j.subject)], NOW)
    (service_share,) = slt_rows(store, f"service:7A6:{PAEDS}")
    assert json.loads(service_share["payload"])["not_for_professionals"] == [BOWEN["id"]]
    assert appointment_item(store, j.household_id, BOWEN["id"])["status"] == "withheld"
    assert appointment_item(store, j.household_id, AHMED["id"])["status"] == "on_its_way"


def test_a_professional_refused_while_the_service_copy_is_being_sent_gets_a_notice(store: Store) -> None:
    """The copy went out without Dr Bowen on its "not for" list: a notice naming him follows it."""
    feeder = Feeder(store, NOW)
    j, before = journey(404)
    d1 = directive("consent-404-health", j.child_id, NOW, DirectiveDecision.PERMIT, HEALTH_CARE)
    feeder.feed([*before, consent_event(d1, j.subject)], NOW)
    hook = Webhook(delay=1.5)
    try:
        delivery.set_webhook(store, "7A6", hook.url, "s3cret-shared")
        sending = threading.Thread(target=deliver, args=(store, NOW + timedelta(seconds=1)))
        sending.start()
        wait_until(lambda: any(d["state"] in ("queued", "sending") and d["next_attempt_at"].replace(tzinfo=UTC) >
                               NOW + timedelta(seconds=30) for d in slt_rows(store, f"service:7A6:{PAEDS}")),
                   10, "the claim")
        t2 = NOW + timedelta(seconds=2)
        d2 = directive("consent-404-not-bowen", j.child_id, t2, DirectiveDecision.DENY,
                       Scope(professional_ids=frozenset({BOWEN["id"]})))
        feeder.feed([consent_event(d2, j.subject)], t2)
        sending.join(30)
        (service_share,) = slt_rows(store, f"service:7A6:{PAEDS}")
        assert service_share["state"] == "delivered"
        (notice,) = slt_rows(store, BOWEN["id"], kind="withdrawal_notice")
        assert notice["state"] == "queued"
        hook.delay = 0
        deliver(store, NOW + timedelta(seconds=5))
        slt = [json.loads(q["body"]) for q in hook.requests
               if json.loads(q["body"])["information"].get("report_id") == f"slt-{j.child_id}"]
        assert [(b["kind"], b["recipient"].get("professional_id"), b.get("not_for_professionals")) for b in slt] == [
            ("share", None, None), ("withdrawal_notice", BOWEN["id"], None)]
    finally:
        hook.close()
