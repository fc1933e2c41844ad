"""Alerts have a lifecycle: raised once, resolved once when their condition clears (real SQLite and
PostgreSQL; decisions from the sharing step exactly as the worker makes them; a clock passed in).

An agency with no webhook reads its shares from its inbox: a share left unread there is not
delivered, and is escalated to the coordinator like an unacknowledged webhook delivery."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from hub.core.events import InboundEvent
from hub.db.schema import alerts, deliveries
from hub.db.sealed import sealer
from hub.db.store import Store
from hub.demo.journey import ABUHB_PAEDS, CAV_SLT, report_not_sent_journey
from hub.sharing import delivery, readiness
from hub.sharing.alerts import list_alerts, opened
from tests.sharing.sharing_support import Feeder, Webhook, deliver

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(db_url: str) -> Store:
    return Store.open(db_url)


def paeds_shares(store: Store) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(deliveries).where(
            deliveries.c.agency_id == ABUHB_PAEDS["agency_id"], deliveries.c.kind == "share",
            deliveries.c.state != "withheld").order_by(deliveries.c.delivery_id))]


def alert_rows(store: Store) -> list[dict[str, Any]]:
    """The alerts as stored, their sealed message and details opened with the child's key."""
    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(alerts).order_by(alerts.c.alert_id))]
    return [opened(sealer(store), r) for r in rows]


def test_a_share_unread_in_the_inbox_is_escalated_and_its_acknowledgement_resolves_the_alert(store: Store) -> None:
    feeder = Feeder(store, NOW)
    j = report_not_sent_journey(NOW, seed=901, child_id="c-901", household_id="hh-901")
    feeder.feed(j.before_consent + j.consent, NOW)
    stats = deliver(store, NOW + timedelta(seconds=1))  # no webhook for the paediatric service: its inbox
    assert stats.to_inbox == 2
    assert {(s["state"], s["channel"]) for s in paeds_shares(store)} == {("queued", "inbox")}

    states = [s for s in delivery.recipient_states(store, j.household_id)
              if s["recipient_service"] == ABUHB_PAEDS["service_name"] and s["outcome"] == "permit"]
    assert len(states) == 2 and {s["note"] for s in states} == {"in the agency's inbox, not yet read"}
    (appt,) = readiness.readiness(store, j.household_id, NOW)["children"][0]["appointments"]
    report = next(i for i in appt["reports"] if i["record_type"] == "ReportIssued")
    assert report["status"] == "unread_in_inbox" and report["why"] == "in the agency's inbox, not yet read"

    assert delivery.escalate_unacknowledged(store, NOW + timedelta(hours=71)) == 0  # within the window
    assert delivery.escalate_unacknowledged(store, NOW + timedelta(hours=73)) == 2
    assert delivery.escalate_unacknowledged(store, NOW + timedelta(hours=74)) == 0  # raised once
    overdue = list_alerts(store, household_id=j.household_id, kind="ack_overdue")
    assert len(overdue) == 2 and {a["state"] for a in overdue} == {"open"}
    assert all("has not read" in a["message"] and "not yet read" in a["message"] for a in overdue)
    assert all(a["details"]["unread"] for a in overdue)

    first = overdue[0]["details"]["delivery_id"]
    acked = delivery.acknowledge(store, ABUHB_PAEDS["agency_id"], first, now=NOW + timedelta(hours=75))
    assert acked["state"] == "acknowledged"
    (resolved,) = list_alerts(store, household_id=j.household_id, state="resolved")
    assert resolved["details"]["delivery_id"] == first
    assert resolved["resolved_at"] == NOW + timedelta(hours=75)
    assert "acknowledged the share" in resolved["resolution"]
    still = list_alerts(store, household_id=j.household_id, state="open")
    assert [a["details"]["delivery_id"] for a in still] == [overdue[1]["details"]["delivery_id"]]

    for hours in (76, 77):  # later passes resolve nothing twice and raise nothing again
        assert delivery.escalate_unacknowledged(store, NOW + timedelta(hours=hours)) == 0
    (again,) = list_alerts(store, household_id=j.household_id, state="resolved")
    assert again["resolved_at"] == resolved["resolved_at"] and again["resolution"] == resolved["resolution"]
    assert len(alert_rows(store)) == 2


def test_an_unread_share_withdrawn_before_it_is_read_resolves_its_alert_on_the_next_pass(store: Store) -> None:
    feeder = Feeder(store, NOW)
    j = report_not_sent_journey(NOW, seed=902, child_id="c-902", household_id="hh-902")
    feeder.feed(j.before_consent + j.consent, NOW)
    deliver(store, NOW + timedelta(seconds=1))
    assert delivery.escalate_unacknowledged(store, NOW + timedelta(hours=73)) == 2
    with store.engine.begin() as conn:  # as the sharing step cancels an undelivered share
        conn.execute(deliveries.update().where(deliveries.c.agency_id == ABUHB_PAEDS["agency_id"]).values(
            state="cancelled", closed_at=NOW + timedelta(hours=74), why="consent withdrawn before delivery"))
    assert delivery.escalate_unacknowledged(store, NOW + timedelta(hours=75)) == 0
    resolved = list_alerts(store, household_id=j.household_id, state="resolved")
    assert len(resolved) == 2 and all("withdrawn before" in a["resolution"] for a in resolved)


def test_a_readiness_alert_resolves_once_consent_is_given_and_the_report_shared(store: Store) -> None:
    feeder = Feeder(store, NOW)
    j = report_not_sent_journey(NOW, seed=903, child_id="c-903", household_id="hh-903")
    feeder.feed(j.before_consent, NOW)
    assert readiness.sweep(store, NOW) == 1
    assert readiness.sweep(store, NOW + timedelta(minutes=5)) == 0  # raised once
    (alert,) = list_alerts(store, household_id=j.household_id, kind="readiness")
    assert alert["state"] == "open"

    feeder.feed(j.consent, NOW + timedelta(hours=1))  # the family consents: the report is shared
    deliver(store, NOW + timedelta(hours=1, seconds=1))
    assert readiness.sweep(store, NOW + timedelta(hours=2)) == 0
    assert list_alerts(store, household_id=j.household_id) == []
    (done,) = list_alerts(store, household_id=j.household_id, state="resolved")
    assert done["alert_id"] == alert["alert_id"] and done["resolved_at"] == NOW + timedelta(hours=2)
    assert "nothing is withheld or overdue any more" in done["resolution"]
    assert "Speech and language therapy report: in the agency's inbox, not yet read" in done["resolution"]

    readiness.sweep(store, NOW + timedelta(hours=3))  # resolved once
    (same,) = list_alerts(store, household_id=j.household_id, state="resolved")
    assert same["resolved_at"] == done["resolved_at"]
    assert len(alert_rows(store)) == 1


def test_a_readiness_alert_resolves_when_the_appointment_passes(store: Store) -> None:
    feeder = Feeder(store, NOW)
    j = report_not_sent_journey(NOW, seed=904, child_id="c-904", household_id="hh-904")
    feeder.feed(j.before_consent, NOW)
    assert readiness.sweep(store, NOW) == 1
    assert readiness.sweep(store, j.appointment_start - timedelta(hours=1)) == 0
    assert list_alerts(store, household_id=j.household_id, state="open")  # still withheld, still ahead
    passed = j.appointment_start + timedelta(hours=1)
    assert readiness.sweep(store, passed) == 0
    (done,) = list_alerts(store, household_id=j.household_id, state="resolved")
    assert done["kind"] == "readiness" and done["resolved_at"] == passed
    assert done["resolution"] == f"the appointment on {j.appointment_start:%Y-%m-%d} has passed"
    assert list_alerts(store, household_id=j.household_id) == []


def test_a_report_request_resolves_when_the_report_is_written(store: Store) -> None:
    feeder = Feeder(store, NOW)
    j = report_not_sent_journey(NOW, seed=905, child_id="c-905", household_id="hh-905")
    late = NOW + timedelta(days=40)  # the assessment's report (issued at -10 days) never came: a new assessment
    assessed = InboundEvent(record_type="AssessmentCompleted", sector="health", source_system="cav-wcp",
                            source_id="cav-assess-again-905", occurred_at=NOW + timedelta(days=1), subject=j.subject,
                            body={"service": CAV_SLT, "assessment_kind": "Communication review"})
    feeder.feed([*j.before_consent, assessed], NOW + timedelta(days=1))
    assert readiness.sweep(store, late) >= 1
    (req,) = list_alerts(store, household_id=j.household_id, kind="report_request")
    assert req["state"] == "open"
    report = InboundEvent(record_type="ReportIssued", sector="health", source_system="cav-wcp",
                          source_id="cav-slt-report-again-905", occurred_at=late, subject=j.subject,
                          body={"report_id": "slt-905-2", "service": CAV_SLT,
                                "report_kind": "speech_and_language_therapy", "title": "SLT review report"})
    feeder.feed([report], late)
    readiness.sweep(store, late + timedelta(minutes=5))
    (done,) = list_alerts(store, household_id=j.household_id, kind="report_request", state="resolved")
    assert done["resolution"] == f"{CAV_SLT['service_name']} has issued the report"
    assert list_alerts(store, household_id=j.household_id, kind="report_request") == []


def test_a_failed_delivery_alert_resolves_when_the_information_reaches_the_recipient_after_all(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_SHARING_MAX_ATTEMPTS", "1")
    feeder = Feeder(store, NOW)
    j = report_not_sent_journey(NOW, seed=906, child_id="c-906", household_id="hh-906")
    feeder.feed(j.before_consent + j.consent, NOW)
    hook = Webhook(status=503)
    try:
        delivery.set_webhook(store, ABUHB_PAEDS["agency_id"], hook.url, "a-shared-secret")
        assert deliver(store, NOW + timedelta(seconds=1)).failed == 2
        failed = list_alerts(store, household_id=j.household_id, kind="delivery_failed")
        assert len(failed) == 2 and {a["state"] for a in failed} == {"open"}
        assert delivery.escalate_unacknowledged(store, NOW + timedelta(minutes=1)) == 0
        assert len(list_alerts(store, household_id=j.household_id, state="open")) == 2  # nothing cleared yet

        hook.status = 200  # the report is corrected and issued again: its new version is delivered
        report = next(e for e in j.before_consent if e.source_id == j.slt_report_source_id)
        feeder.feed([dataclasses.replace(report, source_version=2)], NOW + timedelta(minutes=2))
        assert deliver(store, NOW + timedelta(minutes=3)).delivered >= 1  # the pass ends with escalation
        delivery.escalate_unacknowledged(store, NOW + timedelta(minutes=4))  # resolves nothing twice
        (done,) = list_alerts(store, household_id=j.household_id, kind="delivery_failed", state="resolved")
        assert done["resolution"].startswith(f"delivered to {ABUHB_PAEDS['service_name']} on ")
        assert done["resolved_at"] == NOW + timedelta(minutes=3)
        (still,) = list_alerts(store, household_id=j.household_id, kind="delivery_failed")  # the assessment
        assert still["state"] == "open" and still["alert_id"] != done["alert_id"]
    finally:
        hook.close()
