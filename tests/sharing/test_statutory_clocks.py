"""Statutory clocks per nation over the seed journeys (Olivia Lewis's EHC needs assessment, which took
longer than 20 weeks) and a Welsh IDP referral: deadlines, days left, alerts before a deadline, and a
recorded exception that stops a clock. Events are encoded, decoded and projected as the worker does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub.core.errors import ConfigError
from hub.core.events import InboundEvent
from hub.db.store import Store
from hub.demo import scenario
from hub.sharing import coordination
from hub.sharing.alerts import list_alerts
from tests.sharing.sharing_support import Feeder

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
OLIVIA = scenario.build(NOW).people[3]


@pytest.fixture
def store(db_url: str) -> Store:
    return Store.open(db_url)


def days(n: float) -> datetime:
    return NOW + timedelta(days=n)


def by_clock(store: Store, household: str, child: str, now: datetime = NOW) -> dict[str, list[dict[str, object]]]:
    out: dict[str, list[dict[str, object]]] = {}
    for c in coordination.household_clocks(store, household, now)["children"][child]:
        out.setdefault(str(c["clock"]), []).append(c)
    return out


def test_the_lewis_ehc_clocks_show_a_decision_in_time_a_plan_late_and_the_review_running(store: Store) -> None:
    Feeder(store, NOW).feed(scenario.build(NOW).events, NOW)
    clocks = by_clock(store, "household-lewis", "child-lewis-1")
    (decision,) = clocks["ehc_assessment_decision"]
    assert decision["state"] == "met" and decision["deadline"] == (days(-200) + timedelta(weeks=6)).date().isoformat()
    assert "SEND Regulations 2014 reg. 5(1)" in str(decision["source"])
    (plan,) = clocks["ehc_final_plan"]
    assert plan["state"] == "late" and plan["deadline"] == days(-60).date().isoformat()
    assert plan["ended_on"] == days(-45).date().isoformat()
    (review,) = clocks["ehc_annual_review"]
    due = days(-45).date().replace(year=days(-45).year + 1)
    assert review["state"] == "running" and review["deadline"] == due.isoformat()
    assert review["days_left"] == (due - NOW.date()).days
    assert "wales" not in {c["nation"] for cs in clocks.values() for c in cs}  # no ALN referral

    coordination.sweep(store)
    alerts = {a["details"]["clock"]: a for a in list_alerts(store, household_id="household-lewis",
                                                            kind="statutory_clock", open_only=False)}
    assert set(alerts) == {"ehc_assessment_decision", "ehc_final_plan"}  # each came within 14 days of its deadline
    assert alerts["ehc_final_plan"]["created_at"] == datetime.combine(days(-74).date(), datetime.min.time(), UTC)
    assert alerts["ehc_final_plan"]["resolution"] == f"met late on {days(-45):%d %b %Y}"
    assert alerts["ehc_final_plan"]["message"].startswith("Final EHC plan issued (or notice that none will be): "
                                                         f"the statutory deadline is {days(-60):%d %b %Y}")
    assert alerts["ehc_assessment_decision"]["resolution"] == f"met on {days(-160):%d %b %Y}"


def welsh_referral(child: scenario.Person, at: float, sid: str) -> InboundEvent:
    school = scenario.PRIMARY
    return InboundEvent(record_type="ReferralMade", sector="education", source_system="newport-sims", source_id=sid,
                        occurred_at=days(at), subject=child.id("upn"), category="education", mapping="demo@1",
                        body={"service": school, "reason": "possible additional learning needs", "pathway": "ALN"})


def exception(child: scenario.Person, at: float, clock: str) -> InboundEvent:
    return InboundEvent(record_type="StatutoryClockException", sector="education", source_system="newport-ehc",
                        source_id=f"exc-{clock}", occurred_at=days(at), subject=child.id("upn"), category="education",
                        mapping="demo@1", body={"service": scenario.SEND, "clock": clock,
                                                "exception": "reg. 13(3)(b): the child was absent from the area"})


def test_a_welsh_idp_clock_runs_alerts_before_its_deadline_and_a_recorded_exception_stops_an_ehc_clock(
        store: Store) -> None:
    events = [e for e in scenario.build(NOW).events if e.subject in OLIVIA.identifiers
              and e.record_type not in ("EhcPlanIssued", "PlanReviewed")]
    feeder = Feeder(store, NOW)
    feeder.feed([*events, welsh_referral(OLIVIA, -40, "aln-1")], NOW)
    clocks = by_clock(store, "household-lewis", "child-lewis-1")
    (idp,) = clocks["idp_school"]
    assert idp["nation"] == "wales" and idp["state"] == "running"
    assert "ALNET (Wales) Act 2018 s.11" in str(idp["source"])
    assert idp["deadline"] == days(9).date().isoformat() and idp["days_left"] == 9
    (plan,) = clocks["ehc_final_plan"]
    assert plan["state"] == "overdue" and isinstance(plan["days_left"], int) and plan["days_left"] < 0

    coordination.sweep(store, days(-4))
    (idp_alert,) = [a for a in list_alerts(store, kind="statutory_clock") if a["details"]["clock"] == "idp_school"]
    assert idp_alert["state"] == "open" and idp_alert["details"]["nation"] == "wales"

    feeder.feed([exception(OLIVIA, -3, "ehc_final_plan")], NOW)
    coordination.sweep(store, days(-3))
    (stopped,) = by_clock(store, "household-lewis", "child-lewis-1", days(-3))["ehc_final_plan"]
    assert stopped["state"] == "stopped" and stopped["ended_by"] == "reg. 13(3)(b): the child was absent from the area"
    (plan_alert,) = [a for a in list_alerts(store, kind="statutory_clock", open_only=False)
                     if a["details"]["clock"] == "ehc_final_plan"]
    assert plan_alert["state"] == "resolved" and plan_alert["resolution"].startswith("stopped (reg. 13(3)(b)")


def test_clocks_of_a_nation_not_chosen_do_not_run_and_an_unknown_nation_is_refused(
        store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    Feeder(store, NOW).feed(scenario.build(NOW).events, NOW)
    monkeypatch.setenv("HUB_STATUTORY_NATIONS", "wales")
    assert by_clock(store, "household-lewis", "child-lewis-1") == {}
    monkeypatch.setenv("HUB_STATUTORY_NATIONS", "england,narnia")
    with pytest.raises(ConfigError, match="HUB_STATUTORY_NATIONS: unknown nation narnia"):
        coordination.sweep(store)
    assert list_alerts(store, open_only=False, kind="statutory_clock") == []
