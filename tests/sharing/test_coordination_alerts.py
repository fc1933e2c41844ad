"""Coordination alerts from the rules, over the seed journeys (the Evans and Lewis households): each
encoded and decoded as Avro and projected exactly as the worker does, then swept in event time on
real SQLite and PostgreSQL. Replay, event by event or all at once, raises the same alerts."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hub.core.errors import ConfigError
from hub.core.events import InboundEvent
from hub.core.settings import Settings
from hub.db.schema import alerts, caseloads, households, timeline_changes
from hub.db.sealed import sealer
from hub.db.store import Store, as_utc
from hub.demo import scenario
from hub.demo.journey import ABUHB_PAEDS, CAV_SLT, report_not_sent_journey
from hub.ingest.services import Services
from hub.sharing import alert_sync, coordination
from hub.sharing.alerts import acknowledge_alert, list_alerts, opened
from hub.stream.coordination import ChildFacts, load_ruleset, transition_no_plan
from hub.stream.replay import replay_log
from tests.sharing.sharing_support import Feeder

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(db_url: str) -> Store:
    return Store.open(db_url)


def days(n: float) -> datetime:
    return NOW + timedelta(days=n)


def seeded(store: Store) -> scenario.Journey:
    journey = scenario.build(NOW)
    Feeder(store, NOW).feed(journey.events, NOW)
    return journey


def history(store: Store) -> list[tuple[Any, ...]]:
    """Every alert as a coordinator reads it: key, kind, message, raised, resolved and why."""
    with store.engine.connect() as conn:
        rows = [opened(sealer(store), dict(r._mapping)) for r in conn.execute(sa.select(alerts).order_by(
            alerts.c.alert_key))]
    return [(r["alert_key"], r["kind"], r["household_id"], r["message"], as_utc(r["created_at"]),
             as_utc(r["resolved_at"]) if r["resolved_at"] else None, r["resolution"]) for r in rows]


def by_kind(store: Store, household: str, kind: str) -> list[dict[str, Any]]:
    return list_alerts(store, household_id=household, kind=kind, open_only=False)


def test_the_seed_journeys_raise_each_alert_once_in_event_time_and_resolve_those_that_cleared(store: Store) -> None:
    seeded(store)
    with store.engine.connect() as conn:
        assert coordination.clock(conn) == days(-11)  # the latest booking; future ones do not move it
    raised = coordination.sweep(store)
    assert coordination.sweep(store) == 0  # raised once: a second sweep raises nothing

    (missed,) = by_kind(store, "household-lewis", "missed_appointments")
    assert missed["created_at"] == days(-296) and missed["resolved_at"] == days(-169)
    assert missed["message"] == "2 appointments missed within 90 days (Physiotherapy, Serennu)"
    assert "what stops them attending" in missed["details"]["step"]
    assert missed["resolution"].startswith("fewer than 2 missed appointments within 90 days")
    assert by_kind(store, "household-evans", "missed_appointments") == []  # one CNA is not a pattern

    evans = {a["message"]: a for a in by_kind(store, "household-evans", "referral_unanswered")}
    epilepsy = evans[f"Referral to Paediatric epilepsy nurses on {days(-148):%d %b %Y} has had no answer for 6 weeks"]
    assert epilepsy["state"] == "open" and epilepsy["created_at"] == days(-106)
    ot = evans[f"Referral to Occupational therapy, Serennu on {days(-148):%d %b %Y} has had no answer for 6 weeks"]
    assert ot["resolved_at"] == days(-101) and ot["resolution"].startswith("Occupational therapy, Serennu answered")
    assert not any("Dietetics" in m or "Speech" in m or "Children with Disabilities" in m for m in evans)
    (physio,) = by_kind(store, "household-lewis", "referral_unanswered")  # SLT put her on its list in time
    assert "Physiotherapy" in physio["message"] and physio["created_at"] == days(-328)
    assert physio["resolved_at"] == days(-321)  # the first appointment was booked a week late

    discharges = {a["household_id"]: a for a in list_alerts(store, kind="discharge_no_follow_up", open_only=False)}
    assert discharges["household-lewis"]["created_at"] == days(-367)
    assert discharges["household-lewis"]["resolved_at"] == days(-298)
    assert discharges["household-evans"]["resolved_at"] == days(-90)

    (portage,) = by_kind(store, "household-lewis", "waiting_over_estimate")
    assert portage["state"] == "open" and portage["created_at"] == days(-195)
    assert "estimate of 180 days" in portage["message"] and "Portage" in portage["message"]
    assert raised == len(history(store)) == 10  # with the two statutory clocks of the Lewis EHC assessment


def test_replay_event_by_event_or_all_at_once_gives_identical_alerts(db_url: str, sqlite_url: str) -> None:
    once, stepwise = Store.open(db_url), Store.open(sqlite_url)
    seeded(once)
    coordination.sweep(once)

    events = sorted(scenario.build(NOW).events, key=lambda e: e.occurred_at)
    feeder = Feeder(stepwise, NOW)
    for i in range(0, len(events), 7):  # the stream in small batches, swept after each at its own clock
        feeder.feed(events[i:i + 7], NOW)
        coordination.sweep(stepwise)
    assert history(stepwise) == history(once)


def test_a_coordinator_acknowledges_an_alert_and_the_rule_still_resolves_it(store: Store) -> None:
    seeded(store)
    coordination.sweep(store, days(-100))  # the clock as it stood 100 days ago
    (epilepsy, *_) = [a for a in by_kind(store, "household-evans", "referral_unanswered")
                      if "epilepsy" in a["message"] and a["state"] == "open"]
    acked = acknowledge_alert(store, "household-evans", epilepsy["alert_id"], actor="cc-07", actor_role="coordinator")
    assert acked["state"] == "acknowledged"
    late = scenario.service(*scenario.ABUHB, "health", "Paediatric epilepsy nurses", "EPIL")
    journey = scenario.Journey(now=NOW, people=[])
    cerys = scenario.build(NOW).people[0]
    journey.add(cerys, "ReferralOutcome", -1, {"service": late, "referral_id": "child-evans-1-005",
                                               "outcome": "accepted"}, source_id="epil-outcome-1")
    Feeder(store, NOW).feed(journey.events, NOW)
    coordination.sweep(store)
    (done,) = [a for a in by_kind(store, "household-evans", "referral_unanswered")
               if a["alert_id"] == epilepsy["alert_id"]]
    assert done["state"] == "resolved" and done["acknowledged_by"] == "cc-07" and done["resolved_at"] == days(-1)


def test_each_alert_raised_or_resolved_is_a_change_in_its_household_feed(store: Store) -> None:
    seeded(store)
    coordination.sweep(store)
    with store.engine.connect() as conn:
        kinds = [r.kind for r in conn.execute(sa.select(timeline_changes.c.kind).where(
            timeline_changes.c.household_id == "household-lewis", timeline_changes.c.kind.like("alert%")))]
    lewis = list_alerts(store, household_id="household-lewis", open_only=False)
    resolved = [a for a in lewis if a["state"] == "resolved"]
    assert len(lewis) == 6 and len(resolved) == 5  # with the EHC statutory clocks
    assert sorted(kinds) == ["alert"] * len(lewis) + ["alert_resolved"] * len(resolved)
    feed = coordination.alert_changes(store, ["household-lewis"], 0)
    assert {r["alert_kind"] for r in feed} == {"missed_appointments", "discharge_no_follow_up", "waiting_over_estimate",
                                               "referral_unanswered", "statutory_clock"}
    assert coordination.alert_changes(store, ["household-evans"], feed[-1]["seq"]) == []  # by household


def test_a_caseload_over_the_limit_raises_one_alert_cleared_when_a_family_moves(store: Store, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    rules_file = tmp_path / "rules.json"
    rules_file.write_text(json.dumps({"caseload_over_limit": {"limit": 3}}))
    monkeypatch.setenv("HUB_ALERT_RULES_FILE", str(rules_file))
    with store.engine.begin() as conn:
        for n in range(5):
            conn.execute(households.insert().values(household_id=f"hh-{n}", created_at=days(n), created_by="t"))
            conn.execute(caseloads.insert().values(coordinator_id="cc-full" if n < 4 else "cc-other",
                                                   household_id=f"hh-{n}", since=days(n)))
    assert coordination.sweep(store) == 1
    (alert,) = list_alerts(store, kind="caseload_over_limit")
    assert alert["household_id"] == "hh-3" and alert["message"] == "Caseload of 4 families is above the limit of 3"
    assert coordination.sweep(store) == 0
    with store.engine.begin() as conn:
        conn.execute(caseloads.delete().where(caseloads.c.household_id == "hh-0"))
    coordination.sweep(store)
    (cleared,) = list_alerts(store, kind="caseload_over_limit", state="resolved")
    assert cleared["resolution"] == "caseload back to 3 families, within the limit of 3"


def test_a_bad_rules_file_is_refused_with_its_name_and_changes_nothing(store: Store, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    seeded(store)
    rules_file = tmp_path / "rules.json"
    rules_file.write_text(json.dumps({"missed_appointments": {"cuont": 3}}))
    monkeypatch.setenv("HUB_ALERT_RULES_FILE", str(rules_file))
    with pytest.raises(ConfigError, match="HUB_ALERT_RULES_FILE: alert rule 'missed_appointments' has no parameter"):
        coordination.sweep(store)
    assert history(store) == []
    rules_file.write_text(json.dumps({"missed_appointments": {"count": 3}, "referral_unanswered": {"enabled": False}}))
    coordination.sweep(store)
    assert list_alerts(store, kind="referral_unanswered", open_only=False) == []
    (missed,) = list_alerts(store, kind="missed_appointments", open_only=False)
    assert missed["message"].startswith("3 appointments missed")


def test_a_child_reaching_fourteen_with_no_transition_plan_is_raised_until_one_is_recorded() -> None:
    rule = load_ruleset().get("transition_no_plan")
    assert rule is not None
    child = ChildFacts("hh-t", "c-t", (), date(2012, 3, 10))
    assert transition_no_plan(rule, child, datetime(2026, 3, 9, tzinfo=UTC)) == []  # not 14 yet
    (ep,) = transition_no_plan(rule, child, datetime(2026, 4, 1, tzinfo=UTC))
    assert ep.raised_at == datetime(2026, 3, 10, tzinfo=UTC) and ep.cleared_at is None
    assert ep.message == "Reached 14 on 10 Mar 2026 with no transition plan to adult services"


def test_a_report_owed_before_another_services_appointment_is_raised_until_written_or_the_day_passes(
        store: Store) -> None:
    journey = report_not_sent_journey(NOW, seed=931, child_id="c-931", household_id="hh-931")
    unwritten = [e for e in journey.before_consent if e.record_type != "ReportIssued"]
    feeder = Feeder(store, NOW)
    feeder.feed(unwritten, NOW)
    coordination.sweep(store, days(-3))  # a week before the appointment is not yet here
    assert list_alerts(store, household_id="hh-931", kind="report_not_ready") == []
    coordination.sweep(store, days(-1))
    (owed,) = list_alerts(store, household_id="hh-931", kind="report_not_ready")
    assert owed["created_at"] == days(-2) and owed["message"] == (
        f"{CAV_SLT['service_name']}'s report is not written and the {ABUHB_PAEDS['service_name']} appointment is on "
        f"{days(5):%d %b %Y}")
    assert owed["details"]["step"].startswith(f"Ask {CAV_SLT['service_name']} to write and issue the report")

    report = next(e for e in journey.before_consent if e.record_type == "ReportIssued")
    feeder.feed([dataclasses.replace(report, occurred_at=days(0))], NOW)
    coordination.sweep(store, days(0))
    (written,) = list_alerts(store, household_id="hh-931", kind="report_not_ready", state="resolved")
    assert written["resolved_at"] == days(0) and written["resolution"] == f"written on {days(0):%d %b %Y}"


def test_a_report_never_written_is_resolved_when_the_appointment_took_place_without_it(store: Store) -> None:
    journey = report_not_sent_journey(NOW, seed=932, child_id="c-932", household_id="hh-932")
    Feeder(store, NOW).feed([e for e in journey.before_consent if e.record_type != "ReportIssued"], NOW)
    coordination.sweep(store, days(6))
    (passed,) = list_alerts(store, household_id="hh-932", kind="report_not_ready", state="resolved")
    assert passed["created_at"] == days(-2) and passed["resolved_at"] == days(5)
    assert passed["resolution"] == f"not written; the appointment took place without it on {days(5):%d %b %Y}"


def test_hub_replay_from_the_sealed_ingest_log_gives_the_same_alerts(db_url: str, sqlite_url: str,
                                                                      tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    settings = Settings(database_url=db_url, data_dir=tmp_path, pseudonym_key="k" * 32)
    svc = Services.build(settings)
    events = scenario.build(now).events
    prepared, problems = svc.ingest.prepare(events)  # accepted, sealed and logged as the API leaves them
    assert not problems
    svc.store.append([p.row for p in prepared if p])
    replay_log(svc.store, svc.catalogue, settings)  # `hub replay`: every projection rebuilt from the log
    coordination.sweep(svc.store)

    live = Store.open(sqlite_url)
    feeder = Feeder(live, now)
    for i in range(0, len(events), 11):  # as the agencies sent them (not in event-time order), swept each batch
        feeder.feed(events[i:i + 11], now)
        coordination.sweep(live)
    replayed = history(svc.store)
    assert len(replayed) >= 8
    # late records corrected the alerts they touched; one raised on records a late one contradicted stays,
    # resolved as no longer shown (a coordinator may have acted on it), and is the only difference
    assert [a for a in history(live) if a[-1] != alert_sync.GONE] == replayed
    assert all(a[-1] == alert_sync.GONE for a in history(live) if a not in replayed)


def test_no_alert_tells_of_a_record_the_read_policy_can_hide_from_the_coordinator(store: Store) -> None:
    seeded(store)  # Ffion's referral to CAMHS is recorded as mental health, a restricted category
    coordination.sweep(store, days(60))  # long past its six weeks: it would be due
    messages = [a["message"] for a in list_alerts(store, kind="referral_unanswered", open_only=False)]
    assert messages and not any("CAMHS" in m for m in messages)
    ffion = scenario.build(NOW).people[2]
    protection = [InboundEvent(
        record_type="AttendanceRecorded", sector="health", source_system="abuhb-wcp", source_id=f"sg-{n}",
        occurred_at=days(-10 + n), subject=ffion.id("nhs-number"), category="child_protection", mapping="demo@1",
        body={"appointment_id": f"sg-appt-{n}", "service": scenario.PAEDS, "outcome": "did_not_attend"})
        for n in range(3)]
    Feeder(store, NOW).feed(protection, NOW)
    coordination.sweep(store, days(0))
    assert [a for a in list_alerts(store, kind="missed_appointments", open_only=False)
            if a["child_id"] == ffion.child_id] == []
