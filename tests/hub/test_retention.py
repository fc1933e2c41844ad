"""Per-agency retention against real SQLite and PostgreSQL: expired events leave the ingest log and the
projections, audited; a dry run changes nothing; a second run finds nothing; `hub retention apply`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from hub.cli.main import app as cli
from hub.core.errors import ConfigError
from hub.core.events import InboundEvent, SubjectRef
from hub.core.settings import Settings
from hub.db.schema import ingest_log, timeline_entries
from hub.db.store import Store
from hub.demo.identifiers import nhs_number, upn
from hub.governance.audit import AuditLog
from hub.governance.retention import RetentionPolicy, apply_retention
from hub.ingest.services import Services
from hub.stream import readmodel
from hub.stream.replay import replay_log
from tests.support import row_counts

NOW = datetime.now(UTC).replace(microsecond=0)
OLD, RECENT = NOW - timedelta(days=4000), NOW - timedelta(days=10)
HEALTH = {"agency_id": "7A6", "agency_name": None, "sector": "health", "service_code": None, "service_name": "SLT"}
SCHOOL = {"agency_id": "S1", "agency_name": None, "sector": "education", "service_code": None,
          "service_name": "Maes Ebbw Special School"}


def appointment(source_id: str, at: datetime, ident: SubjectRef, version: int = 1) -> InboundEvent:
    return InboundEvent(record_type="AppointmentBooked", sector="health", source_system="abuhb-pas",
                        source_id=source_id, occurred_at=at, subject=ident, source_version=version,
                        body={"service": HEALTH, "start": at})


def placement(source_id: str, at: datetime, ident: SubjectRef) -> InboundEvent:
    return InboundEvent(record_type="SchoolPlacement", sector="education", source_system="mis",
                        source_id=source_id, occurred_at=at, subject=ident,
                        body={"school": SCHOOL, "start_date": at.date()})


def link(ident: SubjectRef) -> InboundEvent:
    return InboundEvent(record_type="IdentityLinked", sector="hub", source_system="enrolment",
                        source_id=f"link-{ident.system}", occurred_at=OLD, subject=ident,
                        body={"action": "link", "child_id": "child-1", "household_id": "hh-1",
                              "identifier_system": ident.system})


@pytest.fixture
def services(db_url: str, tmp_path: Path) -> Iterator[Services]:
    svc = Services.build(Settings(database_url=db_url, data_dir=tmp_path, pseudonym_key="k" * 32))
    nhs, pupil = SubjectRef("nhs-number", nhs_number(801)), SubjectRef("upn", upn(801))
    events = [link(nhs), link(pupil),
              appointment("old-1", OLD, nhs), appointment("old-2", OLD - timedelta(days=1), nhs),
              appointment("recent", RECENT, nhs),
              appointment("moved", OLD, nhs), appointment("moved", RECENT, nhs, version=2),  # kept: v2 is recent
              placement("school-old", OLD, pupil)]
    prepared, problems = svc.ingest.prepare(events)
    assert not problems
    svc.store.append([p.row for p in prepared if p])
    replay_log(svc.store, svc.catalogue, svc.settings)
    yield svc
    svc.store.engine.dispose()


def source_ids(store: Store) -> set[str]:
    with store.engine.connect() as conn:
        return {r[0] for r in conn.execute(sa.select(ingest_log.c.source_id))}


def test_policy_parsing() -> None:
    policy = RetentionPolicy.parse('{"7A6": 9125, "*": 3650}')
    assert (policy.period_for("7A6"), policy.period_for("W06000022")) == (9125, 3650)
    assert RetentionPolicy.parse("").as_dict() == {}
    for bad in ("[1]", '{"7A6": "25y"}', '{"7A6": 0}', '{"7A6": true}', "not json"):
        with pytest.raises(ConfigError):
            RetentionPolicy.parse(bad)


def test_expired_events_leave_the_log_and_the_projections_audited(services: Services) -> None:
    store = services.store
    policy = RetentionPolicy.parse(json.dumps({"7A6": 3650}))  # ten years for the health board; school kept
    before = row_counts(store)
    dry = apply_retention(store, policy, dry_run=True)
    [health] = dry.agencies
    assert (health.agency_id, health.days, health.events, health.versions) == ("7A6", 3650, 2, 2)
    assert row_counts(store) == before and AuditLog(store).count() == 0

    report = apply_retention(store, policy)
    assert report.events == 2 and report.removed["ingest_log"] == 2 and report.removed["timeline_entries"] == 2
    assert source_ids(store) == {"link-nhs-number", "link-upn", "recent", "moved", "school-old"}
    rows, _ = readmodel.timeline(store, "hh-1", limit=50)
    assert sorted(r["record_type"] for r in rows) == ["AppointmentBooked", "AppointmentBooked", "SchoolPlacement"]
    audit = AuditLog(store)
    [record] = audit.records(actions=["erasure"])
    assert record.purpose == "retention" and record.detail["agencies"]["7A6"]["events"] == 2
    assert audit.verify().ok
    # idempotent: nothing has expired since; no second audit record; a replay brings nothing back
    assert apply_retention(store, policy).events == 0 and audit.count() == 1
    replay_log(store, services.catalogue, services.settings)
    assert len(readmodel.timeline(store, "hh-1", limit=50)[0]) == 3
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(timeline_entries)).scalar_one() == 3

    # a default period for every other agency reaches the school too; identity links have no agency: kept
    assert apply_retention(store, RetentionPolicy.parse('{"*": 3650}')).events == 1
    assert source_ids(store) == {"link-nhs-number", "link-upn", "recent", "moved"}


def test_hub_retention_apply_dry_run_and_run(tmp_path: Path, services: Services) -> None:
    if services.store.engine.dialect.name != "sqlite":
        pytest.skip("the command is the same on both databases; run it once")
    env = {"HUB_DATABASE_URL": str(services.store.engine.url), "HUB_DATA_DIR": str(tmp_path),
           "HUB_PSEUDONYM_KEY": "k" * 32, "HUB_RETENTION_POLICY": '{"7A6": 3650}'}
    runner = CliRunner()
    none = runner.invoke(cli, ["retention", "apply", "--dry-run"], env={**env, "HUB_RETENTION_POLICY": ""})
    assert none.exit_code == 0 and "no retention policy" in none.output
    dry = runner.invoke(cli, ["retention", "apply", "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert "7A6" in dry.output and "dry run: 2 event(s) would be removed; nothing changed" in dry.output
    assert len(source_ids(services.store)) == 7  # nothing changed
    done = runner.invoke(cli, ["retention", "apply"], env=env)
    assert done.exit_code == 0 and "removed 2 event(s)" in done.output
    bad = runner.invoke(cli, ["retention", "apply"], env={**env, "HUB_RETENTION_POLICY": '{"7A6": -1}'})
    assert bad.exit_code == 2 and "whole number of days" in bad.output
