"""`hub up` as a user runs it: clear errors on bad configuration, clean stops with no orphan broker,
and nothing accepted lost across SIGTERM or kill -9 of every process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.demo.identifiers import nhs_number
from hub.kafka.broker import free_port
from tests.support import (
    bearer,
    children_of,
    enrol_child,
    hub_env,
    pid_alive,
    ready,
    run_hub,
    spawn,
    stop,
    wait_until,
)

pytestmark = pytest.mark.broker
AGENCY = bearer("agency", "abuhb-pas", agency="7A6")


def test_unreachable_kafka_is_one_clear_line(tmp_path: Path) -> None:
    env = hub_env(kafka_bootstrap=f"127.0.0.1:{free_port()}", data_dir=tmp_path, api_port=free_port())
    result = run_hub(["up"], env)
    assert result.returncode == 2
    assert "error: Kafka at 127.0.0.1:" in result.stderr and "unreachable" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_busy_port_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = run_hub(["up"], hub_env(data_dir=tmp_path, api_port=port))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: port 127.0.0.1:{port} is busy (set HUB_API_PORT to a free port)"


def test_unwritable_database_path_is_one_clear_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    env = hub_env(data_dir=tmp_path / "d", database_url=f"sqlite:///{blocker}/sub/hub.db", api_port=free_port())
    result = run_hub(["up"], env)
    assert result.returncode == 2
    assert "error: database path" in result.stderr and "is not writable" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_missing_schema_directory_is_one_clear_line(tmp_path: Path) -> None:
    env = hub_env(data_dir=tmp_path, api_port=free_port())
    env["HUB_SCHEMA_DIR"] = str(tmp_path / "no-schemas")
    result = run_hub(["up"], env)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: schema directory {tmp_path / 'no-schemas'} does not exist " \
                                    "(set HUB_SCHEMA_DIR)"


def events(n: int) -> list[dict[str, Any]]:
    """``n`` attendances of the child whose NHS number :meth:`HubUp.start` links through enrolment."""
    t0 = datetime(2026, 10, 1, tzinfo=UTC)
    out: list[dict[str, Any]] = []
    for i in range(n):
        out.append({
            "record_type": "AttendanceRecorded", "sector": "health", "source_system": "abuhb-pas",
            "source_id": f"att-{i}", "occurred_at": (t0 + timedelta(hours=i)).isoformat(),
            "subject": {"system": "nhs-number", "value": nhs_number(5)},
            "body": {"appointment_id": f"appt-{i}", "outcome": "did_not_attend" if i % 3 == 0 else "attended",
                     "service": {"agency_id": "7A6", "sector": "health", "service_name": "Physiotherapy"}},
        })
    return out


class HubUp:
    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = hub_env(data_dir=tmp_path / "data", api_port=self.port)
        self.log = tmp_path / "hub.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.household = ""

    def start(self) -> subprocess.Popen[bytes]:
        self.proc = spawn(["up"], self.env, self.log)
        wait_until(lambda: ready(self.base) or self.proc.poll() is not None, 60, "hub up to be ready")
        assert self.proc.poll() is None, self.log.read_text()[-3000:]
        if not self.household:  # the child the events are about, enrolled once as a coordinator does
            self.household, _ = enrol_child(self.base, "cc-1", "nhs-number", nhs_number(5))
        return self.proc

    def stop(self) -> None:
        """SIGTERM the stack if it is still running (tests call this in ``finally``: no orphans)."""
        if self.proc is not None and self.proc.poll() is None:
            stop(self.proc, signal.SIGTERM)

    def timeline(self, household: str = "") -> list[dict[str, Any]]:
        r = httpx.get(f"{self.base}/v1/households/{household or self.household}/timeline", params={"limit": 500},
                      headers=bearer("coordinator", "cc-1"), timeout=5)
        return r.json()["entries"] if r.status_code == 200 else []

    def topics(self) -> dict[str, int]:
        result = run_hub(["topics", "--json"], self.env)
        assert result.returncode == 0, result.stderr
        return dict(json.loads(result.stdout))


def test_sigterm_stops_everything_and_a_restart_has_everything(tmp_path: Path) -> None:
    hub = HubUp(tmp_path)
    proc = hub.start()
    accepted = httpx.post(f"{hub.base}/v1/events", headers=AGENCY, json=events(30), timeout=30)
    assert accepted.status_code == 200, accepted.text
    ids = [a["event_id"] for a in accepted.json()]
    wait_until(lambda: len(hub.timeline()) == 30, 30, "30 timeline entries")
    before = hub.topics()
    assert (before["hub.ingest.health"], before["hub.ingest.identity"]) == (30, 1), before
    children = children_of(proc.pid)
    assert len(children) >= 2  # the broker and a worker

    assert stop(proc, signal.SIGTERM) == 0
    for pid in children:
        wait_until(lambda pid=pid: not pid_alive(pid), 10, f"child {pid} to exit")
    assert "Unclosed AIOKafkaProducer" not in hub.log.read_text()  # every producer closed on the way down

    hub.start()
    entries = hub.timeline()
    assert len(entries) == 30 and {e["event_id"] for e in entries} == set(ids)
    # the new in-memory broker was re-seeded from the ingest log: 30 health events, 1 identity link
    # (the audit checkpoints the deliverer signs meanwhile are counted apart)
    assert hub.topics() | {"hub.deadletter": 0, "hub.audit.checkpoints": 0} == {
        "hub.ingest.health": 30, "hub.ingest.identity": 1, "hub.ingest.social-care": 0, "hub.ingest.education": 0,
        "hub.ingest.consent": 0, "hub.deadletter": 0, "hub.audit.checkpoints": 0}
    again = httpx.post(f"{hub.base}/v1/events", headers=AGENCY, json=events(30), timeout=30).json()
    assert {a["status"] for a in again} == {"duplicate"} and [a["event_id"] for a in again] == ids
    stop(hub.proc)  # type: ignore[arg-type]


def test_kill_9_of_every_process_loses_nothing(tmp_path: Path) -> None:
    hub = HubUp(tmp_path)
    proc = hub.start()
    first = httpx.post(f"{hub.base}/v1/events", headers=AGENCY, json=events(20), timeout=30)
    assert first.status_code == 200
    everything = [proc.pid, *children_of(proc.pid)]
    for pid in everything:
        os.kill(pid, signal.SIGKILL)
    proc.wait(10)
    for pid in everything:
        wait_until(lambda pid=pid: not pid_alive(pid), 10, f"process {pid} to die")

    hub.start()
    wait_until(lambda: len(hub.timeline()) == 20, 30, "20 entries after kill -9")
    more = httpx.post(f"{hub.base}/v1/events", headers=AGENCY, json=events(25), timeout=30).json()
    assert [a["status"] for a in more].count("accepted") == 5
    wait_until(lambda: len(hub.timeline()) == 25, 30, "25 entries")
    # killing only the supervisor takes its broker and workers with it (no orphans)
    children = children_of(hub.proc.pid)  # type: ignore[union-attr]
    os.kill(hub.proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
    for pid in children:
        wait_until(lambda pid=pid: not pid_alive(pid), 10, f"orphan {pid} to die")


def test_two_workers_split_the_work_and_carry_on_when_one_is_killed(tmp_path: Path) -> None:
    hub = HubUp(tmp_path)
    hub.env["HUB_WORKERS"] = "2"
    proc = hub.start()
    workers = [p for p in children_of(proc.pid) if b"worker" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert len(workers) == 2
    monitor = bearer("monitor")
    wait_until(lambda: "hub_workers_ready 2.0" in httpx.get(f"{hub.base}/metrics", headers=monitor, timeout=5).text,
               30, "both workers in the group and ready")
    batch = events(120)
    assert httpx.post(f"{hub.base}/v1/events", headers=AGENCY, json=batch[:61], timeout=30).status_code == 200
    os.kill(workers[0], signal.SIGKILL)  # mid-stream: more events arrive while it is gone
    rest = httpx.post(f"{hub.base}/v1/events", headers=AGENCY, json=batch[:1] + batch[61:], timeout=30)
    assert rest.status_code == 200
    entries = wait_until(lambda: (e := hub.timeline()) and len(e) == 120 and e, 60, "120 entries after a kill")
    assert len({e["event_id"] for e in entries}) == 120  # none lost, none doubled
    # the stack replaced the killed worker
    wait_until(lambda: len([p for p in children_of(proc.pid)
                            if b"worker" in Path(f"/proc/{p}/cmdline").read_bytes()]) == 2, 20, "a new worker")
    stop(proc)
