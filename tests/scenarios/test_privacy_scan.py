"""The privacy scan: after the demo's journeys, no name, date of birth, NHS number or UPN of their people is
in clear anywhere the hub keeps or sends data.

One `hub demo --serve` (its own embedded broker, SQLite in a fresh data directory, debug logging) plays every
journey; the coordinator then records the Evans children's dates of birth through the enrolment route, as
enrolment does. Before the hub stops every record on every topic is read back from its broker (keys, values,
headers); then every text, string, date, JSON and binary column of every table, and every log line the hub
and its workers wrote, are scanned. A finding names the place and the kind of value, never the value.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from hub.db.store import make_engine
from hub.demo.people import COORDINATOR
from hub.demo.scenario import build
from hub.kafka.broker import free_port
from tests.scenarios.privacy_scan import (
    DATE_OF_BIRTH,
    NAME,
    NHS_NUMBER,
    Findings,
    known_people,
    scan_database,
    scan_lines,
    scan_record,
)
from tests.support import bearer, hub_env, ready, spawn, stop, wait_until

pytestmark = pytest.mark.broker


async def read_topics(bootstrap: str, known: object, findings: Findings) -> None:
    """Every record of every topic the broker holds, from the beginning."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        topics = sorted(await consumer.topics())
        consumer.subscribe(topics)
        while batch := await consumer.getmany(timeout_ms=2000):
            for msgs in batch.values():
                for m in msgs:
                    scan_record(m.topic, m.key, m.value, m.headers, known, findings)  # type: ignore[arg-type]
    finally:
        await consumer.stop()


def test_no_name_birth_date_or_nhs_number_in_clear_after_the_journeys(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data = tmp_path / "data"
    log = tmp_path / "hub.log"
    proc = spawn(["demo", "--serve"], hub_env(data_dir=data, api_port=port, log_level="DEBUG"), log)
    findings = Findings()
    try:
        wait_until(lambda: "serving the API" in log.read_text(errors="replace") or proc.poll() is not None, 120,
                   "the demo's journeys")
        assert proc.poll() is None, log.read_text(errors="replace")[-4000:]
        wait_until(lambda: ready(base), 30, "the demo's API")
        journey = build()
        coordinator = bearer("coordinator", COORDINATOR)
        for person in journey.people:
            if person.household_id == "household-evans":  # on the demo coordinator's caseload
                r = httpx.post(f"{base}/v1/households/{person.household_id}/members", headers=coordinator,
                               timeout=30, json={"kind": "child", "relationship": "child",
                                                 "date_of_birth": person.born.isoformat() if person.born else None})
                assert r.status_code == 201, r.text
        engine = make_engine(f"sqlite:///{data / 'hub.db'}")
        with engine.connect() as conn:
            households = [r[0] for r in conn.exec_driver_sql("select household_id from identity_links")]
        known = known_people(journey, households)
        assert {NAME, DATE_OF_BIRTH, NHS_NUMBER} <= set(known.patterns)
        assert sum(h.startswith("household-morgan-") for h in set(households)) == 1  # the report family's
        bootstrap = (data / "run" / "bootstrap").read_text().strip()
        asyncio.run(read_topics(bootstrap, known, findings))
    finally:
        code = stop(proc, timeout=60)
    assert code == 0, log.read_text(errors="replace")[-4000:]

    scan_database(engine, known, findings)
    engine.dispose()
    # the hub's and its workers' log lines (JSON); the demo's account for people on the console is not a log
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("{")]
    lines += [line for p in data.rglob("*.log") for line in p.read_text(errors="replace").splitlines()]
    scan_lines("log", lines, known, findings)

    # the scans read what the journeys left: every table, the topics' records, debug log lines
    assert findings.scanned["tables"] >= 20 and findings.scanned["rows"] > 500, findings.scanned
    assert findings.scanned["records"] > 50, findings.scanned
    assert any(json.loads(line).get("level") == "debug" for line in lines), "debug logging ran"
    assert not findings.places, "personal data in clear:\n" + "\n".join(findings.report())
