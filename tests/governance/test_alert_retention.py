"""Alert retention against real SQLite and PostgreSQL: alerts resolved more than HUB_ALERT_RETENTION_DAYS ago
leave the alerts table and the household change feed, audited; open and acknowledged alerts, and the
coordinator's feed of them, stay as they were; the coordination sweep does not raise a removed alert again;
`hub retention apply` runs it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from hub.cli.main import app as cli
from hub.db.schema import alerts, timeline_changes
from hub.db.store import Store
from hub.demo import scenario
from hub.governance.alert_retention import apply_alert_retention
from hub.governance.audit import AuditLog
from hub.runtime.placement import worker_jobs
from hub.runtime.sharing_jobs import AlertRetentionJob
from hub.sharing import coordination
from hub.sharing.alerts import acknowledge_alert, list_alerts
from tests.sharing.sharing_support import Feeder
from tests.support import row_counts

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CLOCK = NOW - timedelta(days=11)  # the seed journeys' event-time clock (their latest booking)


@pytest.fixture
def store(db_url: str) -> Store:
    store = Store.open(db_url)
    Feeder(store, NOW).feed(scenario.build(NOW).events, NOW)
    coordination.sweep(store)
    return store


def feed_ids(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        return [r[0] for r in conn.execute(sa.select(timeline_changes.c.event_id).where(
            timeline_changes.c.kind.in_(("alert", "alert_resolved", "alert_corrected"))))]


def resolved_before(store: Store, cutoff: datetime) -> list[dict[str, Any]]:
    return [a for a in list_alerts(store, open_only=False)
            if a["resolved_at"] is not None and a["resolved_at"] < cutoff]


def test_resolved_alerts_past_the_period_leave_the_table_and_the_feed_audited_and_open_ones_stay(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_ALERT_RETENTION_DAYS", "90")
    cutoff = CLOCK - timedelta(days=90)  # the event clock is behind the wall clock: the earlier one counts
    (epilepsy,) = [a for a in list_alerts(store, household_id="household-evans", kind="referral_unanswered")
                   if "epilepsy" in a["message"]]
    acknowledge_alert(store, "household-evans", epilepsy["alert_id"], actor="cc-07", actor_role="coordinator")
    unresolved = list_alerts(store)  # open and acknowledged, as the caseload and family pages read them
    old = resolved_before(store, cutoff)
    recent = [a for a in list_alerts(store, state="resolved") if a not in old]
    assert old and unresolved and epilepsy["created_at"] < cutoff  # an old acknowledged alert still open
    stream_before = coordination.alert_changes(store, ["household-evans", "household-lewis"], 0)
    before, audit = row_counts(store), AuditLog(store)
    records_before = audit.count()

    dry = apply_alert_retention(store, dry_run=True)
    assert (dry.alerts, dry.cutoff, dry.days) == (len(old), cutoff, 90)
    assert row_counts(store) == before and audit.count() == records_before

    report = apply_alert_retention(store)
    assert report.alerts == len(old) and report.feed_rows == 2 * len(old)  # each raised, then resolved
    assert list_alerts(store) == unresolved
    assert list_alerts(store, state="resolved") == recent
    removed = {str(a["alert_id"]) for a in old}
    assert not removed & set(feed_ids(store))
    stream_after = coordination.alert_changes(store, ["household-evans", "household-lewis"], 0)
    assert stream_after == [r for r in stream_before if str(r["alert_id"]) not in removed]
    [record] = audit.records(actions=["erasure"])
    assert (record.purpose, record.data_ref) == ("retention", "retention:alerts")
    assert record.detail["alerts"]["removed"] == report.by_kind and sum(report.by_kind.values()) == len(old)
    assert record.subject_household is None and "Referral" not in str(record.detail)  # counts, no words
    assert audit.verify().ok

    # the sweep does not raise them again, a second run removes nothing and writes no record
    assert coordination.sweep(store) == 0 and apply_alert_retention(store).alerts == 0
    assert not resolved_before(store, cutoff) and audit.count() == records_before + 1


def test_retention_off_keeps_every_alert_and_the_sweep_raises_what_it_always_did(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_ALERT_RETENTION_DAYS", "0")
    before = row_counts(store)
    report = apply_alert_retention(store)
    assert (report.alerts, report.cutoff) == (0, None) and row_counts(store) == before
    with store.engine.begin() as conn:  # without retention, an alert removed some other way comes back
        conn.execute(alerts.delete().where(alerts.c.resolved_at.is_not(None)))
    assert coordination.sweep(store) > 0


def test_the_newest_change_in_the_feed_is_kept_so_a_live_stream_resumes_past_it(store: Store) -> None:
    with store.engine.connect() as conn:
        newest = conn.execute(sa.select(timeline_changes).order_by(timeline_changes.c.seq.desc()).limit(1)).one()
    with store.engine.begin() as conn:  # the last change is an alert that is resolved and old
        conn.execute(alerts.update().where(sa.cast(alerts.c.alert_id, sa.String) == newest.event_id).values(
            resolved_at=CLOCK - timedelta(days=400), resolution="cleared"))
    assert newest.kind.startswith("alert")  # the sweep wrote after the projection
    report = apply_alert_retention(store, 365)
    assert report.alerts >= 1
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.max(timeline_changes.c.seq))).scalar_one() == newest.seq
        assert conn.execute(sa.select(sa.func.count()).select_from(alerts).where(
            sa.cast(alerts.c.alert_id, sa.String) == newest.event_id)).scalar_one() == 0


def test_hub_retention_apply_removes_old_resolved_alerts(store: Store, tmp_path: Path) -> None:
    if store.engine.dialect.name != "sqlite":
        pytest.skip("the command is the same on both databases; run it once")
    old = resolved_before(store, CLOCK - timedelta(days=100))
    env = {"HUB_DATABASE_URL": str(store.engine.url), "HUB_DATA_DIR": str(tmp_path), "HUB_PSEUDONYM_KEY": "k" * 32,
           "HUB_RETENTION_POLICY": "", "HUB_ALERT_RETENTION_DAYS": "100"}
    runner = CliRunner()
    dry = runner.invoke(cli, ["retention", "apply", "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert f"{len(old)} would be removed" in dry.output and "no events are removed" in dry.output
    done = runner.invoke(cli, ["retention", "apply"], env=env)
    assert done.exit_code == 0 and f"{len(old)} removed" in done.output and "audit record" in done.output
    assert not resolved_before(store, CLOCK - timedelta(days=100))
    bad = runner.invoke(cli, ["retention", "apply"], env={**env, "HUB_ALERT_RETENTION_DAYS": "-1"})
    assert bad.exit_code == 2 and "HUB_ALERT_RETENTION_DAYS" in bad.output


def test_the_chores_remove_them_under_the_chores_lease_wherever_the_chores_run(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_ALERT_RETENTION_DAYS", "90")
    jobs = {j.name: j for j in worker_jobs(store, "worker-1", deliver=True)}
    job = jobs["sharing.alert_retention"]
    assert isinstance(job, AlertRetentionJob) and job.lease is not None and job.every == 3600
    assert "sharing.alert_retention" not in {j.name for j in worker_jobs(store, "worker-1", deliver=False)}
    old = resolved_before(store, CLOCK - timedelta(days=90))
    assert old
    asyncio.run(job.run_once())
    assert not resolved_before(store, CLOCK - timedelta(days=90))
    [record] = AuditLog(store).records(actions=["erasure"])
    assert record.actor == "hub-retention" and sum(record.detail["alerts"]["removed"].values()) == len(old)
