"""Through `hub up`: a record too large for the broker cannot block the outbox for the rows after it."""

from __future__ import annotations

import re
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from hub.demo.identifiers import nhs_number
from hub.kafka.broker import free_port
from tests.support import bearer, enrol_child, hub_env, ready, spawn, stop, wait_until

AGENCY = bearer("agency", "abuhb-pas", agency="7A6")
T0 = datetime(2026, 10, 1, tzinfo=UTC)


def attendance(i: int, appointment_id: str | None = None) -> dict[str, Any]:
    return {"record_type": "AttendanceRecorded", "sector": "health", "source_system": "abuhb-pas",
            "source_id": f"att-{i}", "occurred_at": (T0 + timedelta(hours=i)).isoformat(),
            "subject": {"system": "nhs-number", "value": nhs_number(7)},
            "body": {"appointment_id": appointment_id or f"appt-{i}", "outcome": "attended",
                     "service": {"agency_id": "7A6", "sector": "health", "service_name": "Physiotherapy"}}}


def gauge(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_a_too_large_record_cannot_block_the_outbox(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "hub.log"
    proc = spawn(["up"], hub_env(data_dir=tmp_path / "data", api_port=port), log)
    try:
        wait_until(lambda: ready(base) or proc.poll() is not None, 60, "hub up to be ready")
        assert proc.poll() is None, log.read_text()[-3000:]
        household, _ = enrol_child(base, "cc-1", "nhs-number", nhs_number(7))
        huge = attendance(0, "x" * (1024 * 1024 + 1))  # over the default per-record limit, under the body limit
        refused = httpx.post(f"{base}/v1/events", headers=AGENCY, json=[huge], timeout=30)
        assert refused.status_code == 413, refused.text
        assert refused.json()["type"].endswith("/too-large")
        good = httpx.post(f"{base}/v1/events", headers=AGENCY, json=[attendance(i) for i in range(1, 6)], timeout=30)
        assert good.status_code == 200, good.text

        def timeline() -> list[dict[str, Any]]:
            r = httpx.get(f"{base}/v1/households/{household}/timeline", headers=bearer("coordinator", "cc-1"),
                          timeout=5)
            return r.json()["entries"] if r.status_code == 200 else []

        wait_until(lambda: len(timeline()) == 5, 60, "the good rows on the timeline")
        metrics = httpx.get(f"{base}/metrics", headers=bearer("monitor"), timeout=10).text
        assert gauge(metrics, "hub_ingest_unpublished") == 0
        assert gauge(metrics, "hub_ingest_oldest_unpublished_seconds") == 0
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
    finally:
        if proc.poll() is None:
            stop(proc, signal.SIGTERM)
