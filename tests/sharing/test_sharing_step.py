"""The sharing step against real SQLite and PostgreSQL databases: decoded records go through
``hub.projection.apply`` and ``hub.sharing.processor.process`` exactly as the worker runs them."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from hub.cli.consent import decision_record, explain_stored
from hub.core.events import InboundEvent, SubjectRef
from hub.db.schema import deliveries, share_decisions
from hub.db.store import Store
from hub.demo.identifiers import nhs_number
from hub.demo.journey import ABUHB_PAEDS, CAV_SLT, report_not_sent_journey
from hub.demo.scenario import build
from hub.governance.audit import AuditLog
from hub.sharing import delivery, readiness
from hub.sharing.alerts import list_alerts
from tests.sharing.sharing_support import (
    Feeder,
    Webhook,
    consent_event,
    deliver,
    permit_directive,
    stored_deliveries,
    withdraw_event,
)
from tests.support import wait_until

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PHYSIO = {"agency_id": "7A6", "agency_name": None, "sector": "health", "service_code": "PHYS",
          "service_name": "Physiotherapy, Serennu"}
SCHOOL = {"agency_id": "W06000022-S3", "agency_name": None, "sector": "education", "service_code": None,
          "service_name": "St Julian's Primary School"}


def rows(store: Store, table: sa.Table, **where: Any) -> list[dict[str, Any]]:
    q = sa.select(table)
    for k, v in where.items():
        q = q.where(table.c[k] == v)
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def share_of(store: Store, source_record: str, recipient_service: str, kind: str = "share") -> dict[str, Any]:
    found = [d for d in stored_deliveries(store, deliveries.c.kind == kind) if d["service"] == recipient_service
             and json.loads(d["payload"])["information"].get("report_id", "") == source_record]
    assert len(found) == 1, found
    return found[0]


def link_event(nhs: SubjectRef, n: str, at: datetime) -> InboundEvent:
    """Enrolment links the NHS number to child ``c-<n>`` of household ``hh-<n>``."""
    body = {"action": "link", "child_id": f"c-{n}", "household_id": f"hh-{n}", "identifier_system": "nhs-number"}
    return InboundEvent(record_type="IdentityLinked", sector="hub", source_system="enrol", source_id=f"l-{n}",
                        occurred_at=at, subject=nhs, body=body)


@pytest.fixture
def store(db_url: str) -> Store:
    return Store.open(db_url)


def test_olivia_paediatrician_sees_same_agency_reports_and_the_ehc_plan_waits_for_consent(store: Store) -> None:
    feeder = Feeder(store, NOW)
    journey = build(NOW)
    first = feeder.feed(journey.events, NOW)
    assert first.decisions > 0 and first.queued > 0 and first.withheld > 0
    again = feeder.feed(journey.events, NOW)  # a replayed batch changes nothing
    assert (again.decisions, again.queued, again.withheld) == (0, 0, 0)
    n_decisions = len(rows(store, share_decisions))
    assert len({(d["information_id"], d["information_version"], d["recipient_key"], d["seq"])
                for d in rows(store, share_decisions)}) == n_decisions

    view = readiness.readiness(store, "household-lewis", NOW)
    (olivia,) = view["children"]
    (appt,) = olivia["appointments"]
    assert appt["service"] == "Community paediatrics, Serennu"
    by_title = {i["title"]: i for i in appt["reports"]}
    slt = by_title["Speech and language therapy assessment"]
    assert slt["status"] == "on_its_way"  # same health board: direct care (R2), queued for delivery
    ehc = by_title["EHC plan (issued)"]
    assert ehc["status"] == "withheld"
    assert ehc["unblock"] == "ask the family for consent to share with Community paediatrics, Serennu"
    assert "outside the producing organisation" in ehc["why"]
    assert appt["alert_due"] and not appt["ready"]

    # deliver (no webhooks configured: agencies read their inbox; the family view gets its copies)
    stats = deliver(store, NOW + timedelta(seconds=1))
    assert stats.delivered > 0 and stats.to_inbox > 0
    copies = delivery.family_copies(store, "household-lewis")
    titles = {c["content"]["information"].get("title") for c in copies}
    assert "Speech and language therapy assessment" in titles
    items, _ = delivery.inbox(store, "7A6", limit=500, now=NOW)
    paeds = [i for i in items if i["content"]["recipient"]["service"] == "Community paediatrics, Serennu"
             and i["content"]["information"].get("report_id") == "rep-olivia-slt-1"]
    assert len(paeds) == 1 and paeds[0]["state"] == "delivered"
    view = readiness.readiness(store, "household-lewis", NOW)
    by_title = {i["title"]: i for i in view["children"][0]["appointments"][0]["reports"]}
    assert by_title["Speech and language therapy assessment"]["status"] == "will_see"

    assert readiness.sweep(store, NOW) >= 1
    alerts = list_alerts(store, household_id="household-lewis", kind="readiness")
    assert len(alerts) == 1 and "ask the family for consent" in alerts[0]["message"]
    assert readiness.sweep(store, NOW) == 0 or len(list_alerts(store, kind="readiness",
                                                               household_id="household-lewis")) == 1


def test_withheld_report_is_shared_exactly_once_after_consent_then_withdrawal_notifies(store: Store) -> None:
    feeder = Feeder(store, NOW)
    j = report_not_sent_journey(NOW)
    feeder.feed(j.before_consent, NOW)
    share = share_of(store, f"slt-{j.child_id}", ABUHB_PAEDS["service_name"])
    assert share["state"] == "withheld" and "R3-default-deny" in share["why"]
    view = readiness.readiness(store, j.household_id, NOW)
    (appt,) = view["children"][0]["appointments"]
    item = next(i for i in appt["reports"] if i["record_type"] == "ReportIssued")
    assert item["status"] == "withheld"
    assert item["unblock"] == f"ask the family for consent to share with {ABUHB_PAEDS['service_name']}"
    assert readiness.sweep(store, NOW) == 1
    (alert,) = list_alerts(store, household_id=j.household_id)
    assert alert["kind"] == "readiness"

    later = NOW + timedelta(hours=1)
    r = feeder.feed(j.consent, later)
    assert r.queued == 2  # the report and the assessment, to the paediatrician only
    share = share_of(store, f"slt-{j.child_id}", ABUHB_PAEDS["service_name"])
    assert share["state"] == "queued"
    decision = rows(store, share_decisions, decision_id=share["decision_id"])[0]
    assert (decision["outcome"], decision["rule_id"], decision["seq"]) == ("permit", "R5-directive-permit", 1)
    assert json.loads(decision["directive_ids"]) == [j.directive_id]
    again = feeder.feed(j.consent, later)  # redelivery of the consent event: still one share
    assert again.queued == 0
    assert len([d for d in rows(store, deliveries) if d["service"] == ABUHB_PAEDS["service_name"]]) == 2

    text = explain_stored(decision_record(store, share["decision_id"]) or {})
    assert "PERMITTED on the basis of consent" in text and j.directive_id in text

    hook = Webhook()
    try:
        delivery.set_webhook(store, "7A6", hook.url, "s3cret-shared")

        deliver(store, later + timedelta(seconds=1))
        (req,) = [q for q in hook.requests if json.loads(q["body"])["kind"] == "share"
                  and json.loads(q["body"])["information"].get("report_id") == f"slt-{j.child_id}"]
        assert delivery.verify("s3cret-shared", req["body"], req["headers"], now=req["at"])
        assert req["headers"]["Idempotency-Key"] == share["delivery_id"]
        body = json.loads(req["body"])
        assert body["child_id"] == j.child_id and body["information"]["document_ref"] == "cav-docs:slt/7781"
        assert nhs_number(301) not in req["body"].decode() and "household" not in req["body"].decode()
        assert share_of(store, f"slt-{j.child_id}", ABUHB_PAEDS["service_name"])["state"] == "delivered"

        # withdrawal: the holder is told, nothing undelivered goes out
        gone = NOW + timedelta(hours=2)
        w = feeder.feed([withdraw_event(j.directive_id, j.subject, gone)], gone)
        assert w.notices == 2  # the report and the assessment
        notice = share_of(store, f"slt-{j.child_id}", ABUHB_PAEDS["service_name"], kind="withdrawal_notice")
        assert notice["state"] == "queued"
        deliver(store, gone + timedelta(seconds=1))
        kinds = [json.loads(q["body"])["kind"] for q in hook.requests]
        assert kinds.count("withdrawal_notice") == 2 and kinds.count("share") == 2
    finally:
        hook.close()


def test_withdrawal_cancels_queued_shares(store: Store) -> None:
    feeder = Feeder(store, NOW)
    j = report_not_sent_journey(NOW, seed=302, child_id="child-w", household_id="hh-w")
    feeder.feed(j.before_consent + j.consent, NOW)
    share = share_of(store, "slt-child-w", ABUHB_PAEDS["service_name"])
    assert share["state"] == "queued"  # consent arrived in the same batch: permitted at once
    feeder.feed([withdraw_event(j.directive_id, j.subject, NOW + timedelta(minutes=5))], NOW + timedelta(minutes=5))
    share = share_of(store, "slt-child-w", ABUHB_PAEDS["service_name"])
    assert share["state"] == "cancelled" and "R3-default-deny" in share["why"]
    assert not [d for d in rows(store, deliveries, kind="withdrawal_notice")]  # nobody held a copy


def test_records_before_the_link_are_decided_when_the_link_arrives(store: Store) -> None:
    feeder = Feeder(store, NOW)
    nhs = SubjectRef("nhs-number", nhs_number(303))
    report = InboundEvent(record_type="ReportIssued", sector="health", source_system="cav", source_id="r-303",
                          occurred_at=NOW - timedelta(days=3), subject=nhs, category="clinical",
                          body={"report_id": "r-303", "service": CAV_SLT, "report_kind": "speech_and_language_therapy",
                                "title": "SLT report"})
    booked = InboundEvent(record_type="AppointmentBooked", sector="health", source_system="abuhb",
                          source_id="a-303", occurred_at=NOW - timedelta(days=2), subject=nhs,
                          body={"service": PHYSIO, "start": NOW + timedelta(days=3)})
    assert feeder.feed([report, booked], NOW).decisions == 0  # parked: not linked yet
    link = link_event(nhs, "303", NOW)
    r = feeder.feed([link], NOW)
    assert r.decisions == 3  # physiotherapy (another board: withheld), parents (copy), young person (under 16)
    physio = share_of(store, "r-303", PHYSIO["service_name"])
    assert physio["state"] == "withheld"
    parents = [d for d in rows(store, deliveries) if d["recipient_kind"] == "family"]
    assert len(parents) == 1 and parents[0]["state"] == "queued"


def test_a_new_version_supersedes_the_queued_share_and_a_disclosure_hold_waits(store: Store) -> None:
    feeder = Feeder(store, NOW)
    nhs = SubjectRef("nhs-number", nhs_number(304))
    link = link_event(nhs, "304", NOW - timedelta(days=9))
    booked = InboundEvent(record_type="AppointmentBooked", sector="health", source_system="abuhb",
                          source_id="a-304", occurred_at=NOW - timedelta(days=8), subject=nhs,
                          body={"service": PHYSIO, "start": NOW + timedelta(days=3)})

    def report(version: int, hold: bool) -> InboundEvent:
        return InboundEvent(record_type="ReportIssued", sector="health", source_system="abuhb", source_id="r-304",
                            occurred_at=NOW - timedelta(days=1), subject=nhs, category="clinical",
                            source_version=version,
                            body={"report_id": "r-304", "service": ABUHB_PAEDS, "report_kind": "paediatric",
                                  "title": "Paediatric report", "disclosure_hold": hold})

    feeder.feed([link, booked, report(1, False)], NOW)
    assert share_of(store, "r-304", PHYSIO["service_name"])["state"] == "queued"
    feeder.feed([report(2, True)], NOW)
    v1 = [d for d in rows(store, deliveries, information_version=1) if d["service"] == PHYSIO["service_name"]]
    assert v1[0]["state"] == "cancelled" and "superseded by version 2" in v1[0]["why"]
    v2 = [d for d in rows(store, deliveries, information_version=2) if d["recipient_kind"] == "family"]
    assert v2[0]["state"] == "withheld" and "R1-disclosure-hold" in v2[0]["why"]
    view = readiness.readiness(store, "hh-304", NOW)
    (item,) = view["children"][0]["appointments"][0]["reports"]
    assert item["status"] == "will_see" or item["status"] == "on_its_way"  # same agency: not held (R2)


def test_failed_webhook_backs_off_then_dead_letters_and_unacknowledged_delivery_escalates(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_SHARING_MAX_ATTEMPTS", "3")
    feeder = Feeder(store, NOW)
    j = report_not_sent_journey(NOW, seed=305, child_id="child-f", household_id="hh-f")
    feeder.feed(j.before_consent + j.consent, NOW)
    hook = Webhook(status=503)
    try:
        delivery.set_webhook(store, "7A6", hook.url, "k")

        t = NOW + timedelta(seconds=1)
        assert deliver(store, t).retried == 2  # the report and the assessment (family copies need no hook)
        share = share_of(store, "slt-child-f", ABUHB_PAEDS["service_name"])
        wait = share["next_attempt_at"].replace(tzinfo=UTC) - t
        assert timedelta(seconds=1) <= wait <= timedelta(seconds=2)  # base 2 s, jittered
        assert deliver(store, t).retried == 0  # not due yet
        deliver(store, t + timedelta(seconds=3))
        st = deliver(store, t + timedelta(seconds=10))
        assert st.failed == 2
        share = share_of(store, "slt-child-f", ABUHB_PAEDS["service_name"])
        assert share["state"] == "failed" and share["attempts"] == 3 and "HTTP 503" in share["last_error"]
        keys = [q["headers"]["Idempotency-Key"] for q in hook.requests]
        assert len(keys) == 6 and len(set(keys)) == 2  # three attempts each, one key per delivery
        assert [a["kind"] for a in list_alerts(store, household_id="hh-f")] == ["delivery_failed"] * 2

        hook.status = 200  # another child's share delivers; then nobody acknowledges it
        j2 = report_not_sent_journey(NOW, seed=3160, child_id="child-g", household_id="hh-g")
        feeder.feed(j2.before_consent + j2.consent, NOW)
        deliver(store, NOW + timedelta(seconds=30))
        assert share_of(store, "slt-child-g", ABUHB_PAEDS["service_name"])["state"] == "delivered"
        assert delivery.escalate_unacknowledged(store, NOW + timedelta(hours=71)) == 0
        assert delivery.escalate_unacknowledged(store, NOW + timedelta(hours=73)) == 2
        assert delivery.escalate_unacknowledged(store, NOW + timedelta(hours=74)) == 0
        overdue = list_alerts(store, household_id="hh-g", kind="ack_overdue")
        assert len(overdue) == 2 and "has not acknowledged" in overdue[0]["message"]
        ack = delivery.acknowledge(store, "7A6", share_of(store, "slt-child-g", ABUHB_PAEDS["service_name"])
                                   ["delivery_id"])
        assert ack["state"] == "acknowledged"
    finally:
        hook.close()


def test_overdue_report_raises_a_report_request(store: Store) -> None:
    feeder = Feeder(store, NOW)
    nhs = SubjectRef("nhs-number", nhs_number(307))
    evs = [
        link_event(nhs, "307", NOW - timedelta(days=60)),
        InboundEvent(record_type="AssessmentCompleted", sector="health", source_system="abuhb", source_id="as-307",
                     occurred_at=NOW - timedelta(days=40), subject=nhs,
                     body={"service": PHYSIO, "assessment_kind": "Motor assessment"}),
        InboundEvent(record_type="AppointmentBooked", sector="health", source_system="abuhb", source_id="ap-307",
                     occurred_at=NOW - timedelta(days=10), subject=nhs,
                     body={"service": ABUHB_PAEDS, "start": NOW + timedelta(days=2)}),
    ]
    feeder.feed(evs, NOW)
    view = readiness.readiness(store, "hh-307", NOW)
    (appt,) = view["children"][0]["appointments"]
    (missing,) = appt["expected"]
    assert missing["overdue"] and missing["service"] == PHYSIO["service_name"]
    assert missing["unblock"] == f"ask {PHYSIO['service_name']} to write and issue the report"
    assert readiness.sweep(store, NOW) == 2
    kinds = sorted(a["kind"] for a in list_alerts(store, household_id="hh-307"))
    assert kinds == ["readiness", "report_request"]
    (req,) = list_alerts(store, household_id="hh-307", kind="report_request")
    assert req["to_service"] == PHYSIO["service_name"]


def test_permit_then_refusal_directive_by_agency(store: Store) -> None:
    """A parent refusing one agency (more specific) wins over a broader permit."""
    feeder = Feeder(store, NOW)
    j = report_not_sent_journey(NOW, seed=308, child_id="child-r", household_id="hh-r")
    refuse = permit_directive("refuse-7a6", "child-r", NOW - timedelta(days=30), agencies=("7A6",),
                              decision="deny")
    feeder.feed(j.before_consent + j.consent + [consent_event(refuse, j.subject)], NOW)
    share = share_of(store, "slt-child-r", ABUHB_PAEDS["service_name"])
    assert share["state"] == "withheld" and "R5-directive-deny" in share["why"]
    inbox, _ = delivery.inbox(store, "7A6")
    assert not inbox
    assert SCHOOL  # (unused fixture data kept for readability)


def test_every_decision_and_consent_change_is_in_the_audit_log_once(store: Store) -> None:
    """Written by the sharing step with the rows themselves: no copying job runs here."""
    from hub.governance.audit import AuditLog

    feeder = Feeder(store, NOW)
    j = report_not_sent_journey(NOW)
    feeder.feed(j.before_consent, NOW)
    feeder.feed(j.consent, NOW + timedelta(hours=1))
    feeder.feed(j.consent, NOW + timedelta(hours=2))  # redelivered: nothing changes, nothing is recorded
    log = AuditLog(store)
    records = log.records(household=j.household_id)
    decisions = rows(store, share_decisions)
    consents = [r for r in records if r.action == "consent_change"]
    by_ref = {r.data_ref: r for r in records if r.action in ("share", "withhold", "hold", "override")}
    assert len(by_ref) == len(decisions) == len([r for r in records if r.data_ref in by_ref])
    assert set(by_ref) == {d["decision_id"] for d in decisions}
    share = share_of(store, f"slt-{j.child_id}", ABUHB_PAEDS["service_name"])
    withheld_first = next(d for d in decisions if d["information_id"] == share["information_id"]
                          and d["recipient_key"] == share["recipient_key"] and d["seq"] == 0)
    assert by_ref[withheld_first["decision_id"]].action == "withhold"
    assert by_ref[share["decision_id"]].action == "share"
    assert by_ref[share["decision_id"]].legal_basis == "consent"
    assert by_ref[share["decision_id"]].detail["rule"] == "R5-directive-permit"
    assert [c.data_ref for c in consents] == [j.directive_id]
    assert log.verify().ok


def test_consent_withdrawn_then_given_again_shares_again_once(store: Store) -> None:
    """A family that withdraws and then gives consent again: the holder is told to stop, then gets the
    report again — once per change, however often the events are redelivered."""
    feeder = Feeder(store, NOW)
    j = report_not_sent_journey(NOW, seed=306, child_id="child-again", household_id="hh-again")
    feeder.feed(j.before_consent + j.consent, NOW)
    hook = Webhook()
    try:
        delivery.set_webhook(store, "7A6", hook.url, "k")

        def sent() -> list[tuple[str, str]]:
            return [(b["kind"], b["delivery_id"]) for b in (json.loads(q["body"]) for q in hook.requests)
                    if b["information"].get("report_id") == "slt-child-again"]

        deliver(store, NOW + timedelta(seconds=1))
        t1 = NOW + timedelta(hours=1)
        feeder.feed([withdraw_event(j.directive_id, j.subject, t1)], t1)
        deliver(store, t1 + timedelta(seconds=1))
        assert [k for k, _ in sent()] == ["share", "withdrawal_notice"]

        t2 = t1 + timedelta(hours=1)
        again = permit_directive("consent-again-2", j.child_id, t2)
        r = feeder.feed([consent_event(again, j.subject)], t2)
        assert r.queued == 2  # the report and the assessment, shared again
        assert feeder.feed([consent_event(again, j.subject)], t2).queued == 0
        deliver(store, t2 + timedelta(seconds=1))
        kinds = [k for k, _ in sent()]
        assert kinds == ["share", "withdrawal_notice", "share"]
        assert len({d for _, d in sent()}) == 3  # each a delivery of its own (its own Idempotency-Key)
        view = readiness.readiness(store, "hh-again", t2)
        item = next(i for i in view["children"][0]["appointments"][0]["reports"] if i["record_type"] == "ReportIssued")
        assert item["status"] == "will_see"

        t3 = t2 + timedelta(hours=1)  # and withdrawn once more: a second notice
        feeder.feed([withdraw_event(again.id, j.subject, t3)], t3)
        deliver(store, t3 + timedelta(seconds=1))
        assert [k for k, _ in sent()] == ["share", "withdrawal_notice", "share", "withdrawal_notice"]
    finally:
        hook.close()


def test_a_report_from_a_new_service_brings_it_the_earlier_reports_too(store: Store) -> None:
    """A pass that only adds reports decides those alone — unless a report brings the team a new
    member, who is then owed the child's earlier records as well."""
    feeder = Feeder(store, NOW)
    nhs = SubjectRef("nhs-number", nhs_number(307))
    link = link_event(nhs, "307", NOW - timedelta(days=9))

    def report(sid: str, service: dict[str, Any], days: int) -> InboundEvent:
        return InboundEvent(record_type="ReportIssued", sector="health", source_system="abuhb", source_id=sid,
                            occurred_at=NOW - timedelta(days=days), subject=nhs, category="clinical",
                            body={"report_id": sid, "service": service, "report_kind": "paediatric", "title": sid})

    feeder.feed([link, report("paeds-1", ABUHB_PAEDS, 5)], NOW)
    assert feeder.feed([report("paeds-2", ABUHB_PAEDS, 4)], NOW).decisions == 2  # parents and young person only
    r = feeder.feed([report("physio-1", PHYSIO, 3)], NOW)
    assert share_of(store, "paeds-1", PHYSIO["service_name"])["state"] == "queued"  # same board: direct care
    assert share_of(store, "paeds-2", PHYSIO["service_name"])["state"] == "queued"
    assert share_of(store, "physio-1", ABUHB_PAEDS["service_name"])["state"] == "queued"
    assert r.decisions == 5  # physio gets paeds-1 and paeds-2; physio-1 to paediatrics, parents, young person
    assert feeder.feed([report("physio-1", PHYSIO, 3)], NOW).decisions == 0  # redelivered: nothing new


def test_a_share_whose_consent_is_withdrawn_before_it_goes_is_cancelled_by_the_deliverer_with_its_record(
        store: Store) -> None:
    """The directive a queued share rests on is withdrawn and the deliverer gets to the share before the sharing
    step does: the deliverer cancels it, and its audit record is written with the cancellation, once."""
    feeder = Feeder(store, NOW)
    j = report_not_sent_journey(NOW, seed=309, child_id="child-late", household_id="hh-late")
    feeder.feed(j.before_consent + j.consent, NOW)
    share = share_of(store, "slt-child-late", ABUHB_PAEDS["service_name"])
    assert share["state"] == "queued"
    with store.engine.begin() as conn:  # recorded as the sharing step records a withdrawal, not yet decided on
        conn.execute(sa.text("update consent_directives set status = 'withdrawn' where directive_id = :d"),
                     {"d": j.directive_id})
    deliver(store, NOW + timedelta(seconds=1))
    deliver(store, NOW + timedelta(seconds=2))  # nothing more to cancel: nothing recorded twice
    assert share_of(store, "slt-child-late", ABUHB_PAEDS["service_name"])["state"] == "cancelled"
    records = [r for r in AuditLog(store).records(household="hh-late") if r.data_ref == share["delivery_id"]]
    assert [(r.action, r.detail["why"]) for r in records] == [("cancel", "consent withdrawn before delivery")]
    assert records[0].subject_child == "child-late" and j.subject.value not in json.dumps(records[0].detail)


def test_a_share_withdrawn_while_it_is_being_sent_is_recorded_as_sent_and_followed_by_a_notice(
        store: Store) -> None:
    """The family withdraws consent while the webhook POST is in flight: the share is marked
    ``sending`` before the POST, so the withdrawal closes it in doubt (it may have been received)
    and queues a withdrawal notice; the notice waits for the POST, which records the delivery."""
    feeder = Feeder(store, NOW)
    j = report_not_sent_journey(NOW, seed=308, child_id="child-race", household_id="hh-race")
    feeder.feed(j.before_consent + j.consent, NOW)
    hook = Webhook()  # an agency endpoint that answers only when the test lets it
    hook.gate = threading.Event()
    try:
        delivery.set_webhook(store, "7A6", hook.url, "k")
        sending = threading.Thread(target=deliver, args=(store, NOW + timedelta(seconds=1)))
        sending.start()
        wait_until(lambda: share_of(store, "slt-child-race", ABUHB_PAEDS["service_name"])["state"] == "sending",
                   10, "the share marked sending before its POST")
        assert not hook.requests
        feeder.feed([withdraw_event(j.directive_id, j.subject, NOW + timedelta(seconds=2))], NOW + timedelta(seconds=2))
        assert share_of(store, "slt-child-race", ABUHB_PAEDS["service_name"])["state"] == "in_doubt"
        notice = share_of(store, "slt-child-race", ABUHB_PAEDS["service_name"], kind="withdrawal_notice")
        assert notice["state"] == "queued" and notice["round"] == 1
        assert sending.is_alive()  # the POST is still waiting for its answer
        trail = AuditLog(store).records(household="hh-race")
        share_id = share_of(store, "slt-child-race", ABUHB_PAEDS["service_name"])["delivery_id"]
        assert [r.detail["in_doubt"] for r in trail if r.action == "cancel" and r.data_ref == share_id] == [True]
        assert [r.action for r in trail if r.data_ref == notice["delivery_id"]] == ["withdrawal_notice"]
        deliver(store, NOW + timedelta(seconds=3))  # the notice does not overtake the share still being sent
        assert share_of(store, "slt-child-race", ABUHB_PAEDS["service_name"],
                        kind="withdrawal_notice")["state"] == "queued"
        hook.gate.set()
        sending.join(30)
        share = share_of(store, "slt-child-race", ABUHB_PAEDS["service_name"])
        assert share["state"] == "delivered" and share["channel"] == "webhook"
        deliver(store, NOW + timedelta(seconds=5))
        kinds = [json.loads(q["body"])["kind"] for q in hook.requests
                 if json.loads(q["body"])["information"].get("report_id") == "slt-child-race"]
        assert kinds == ["share", "withdrawal_notice"]
    finally:
        hook.gate.set()
        hook.close()
