"""The readiness sweep settles households by the chunk (hub.sharing.readiness.sweep_households): their records,
share decisions and alerts read in a few queries, the alerts written in one transaction. Settling them together
must leave exactly the alerts that settling each alone leaves, and what a sweep asks the database must not grow
with the households it reads."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from hub.core.events import InboundEvent
from hub.db.store import Store
from hub.demo.journey import CAV_SLT, report_not_sent_journey
from hub.sharing import readiness
from hub.stream import readmodel
from tests.sharing.sharing_support import Feeder, deliver
from tests.sharing.test_sweep_scope import alert_rows, timed_events

STEP = 30


def test_households_swept_together_or_one_at_a_time_leave_the_same_alerts(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    together, alone = Store.open(db_url), Store.open(f"sqlite:///{tmp_path / 'alone.db'}")
    events = timed_events(8, seed=21)
    end = events[-1][0]
    feeders = [Feeder(s, end) for s in (together, alone)]

    def sweep(at: datetime, step: str) -> None:
        monkeypatch.setattr(readiness, "CHUNK", 200)
        raised = readiness.sweep(together, at)
        monkeypatch.setattr(readiness, "CHUNK", 1)
        assert readiness.sweep(alone, at) == raised, step
        assert alert_rows(together) == alert_rows(alone), step

    for i in range(0, len(events), STEP):  # appointments come due, reports fall overdue, shares go out
        chunk = events[i:i + STEP]
        at = chunk[-1][0]
        for feeder in feeders:
            feeder.feed([e for _, e in chunk], at)
        if i % (3 * STEP) == 0:  # deliveries change what a clinician will see, with nothing new in the feed
            for store in (together, alone):
                deliver(store, at)
        for days in (0, 5):
            sweep(at + timedelta(days=days), f"after event {i + len(chunk)}, day {days}")
    j = report_not_sent_journey(end, seed=905, child_id="c-905", household_id="hh-905")
    assessed = InboundEvent(record_type="AssessmentCompleted", sector="health", source_system="cav-wcp",
                            source_id="cav-slt-assess-again-905", occurred_at=end, subject=j.subject,
                            body={"service": CAV_SLT, "assessment_kind": "Communication review"})
    for feeder in feeders:  # a report owed within 28 days, beside the population
        feeder.feed([*j.before_consent, assessed], end + timedelta(days=1))
    sweep(end + timedelta(days=1), "the journey fed")
    sweep(end + timedelta(days=40), "40 days on")  # the report overdue; appointments passed, their alerts resolved
    rows = alert_rows(together)
    assert {"readiness", "report_request"} <= {r[1] for r in rows}, "both kinds are raised"
    assert len({r[2] for r in rows if r[1] == "readiness"}) > 1  # in more than one household
    assert any(r[5] is not None for r in rows) and any(r[5] is None for r in rows)  # resolved and open


def test_a_readiness_sweep_asks_the_database_as_often_for_many_households_as_for_a_few(
        counted: tuple[Store, list[str]]) -> None:
    store, statements = counted
    events = timed_events(12, seed=29)
    at = events[len(events) // 2][0]  # half way: appointments still to come, alerts to compare with
    Feeder(store, at).feed([e for t, e in events if t <= at], at)
    households = sorted(h.household_id for h in readmodel.households(store))
    assert len(households) == 12
    readiness.sweep_households(store, households, at)  # the alerts are there, so the next sweeps compare

    def asked(ids: list[str]) -> int:
        statements.clear()
        readiness.sweep_households(store, ids, at)
        return len(statements)

    few, many = asked(households[:2]), asked(households)
    assert many == few, (few, many)
    assert many <= 14, statements
