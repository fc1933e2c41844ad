"""Tracing as an operator switches it on: `hub up` sends OTLP/HTTP to a collector, one trace per event.

A small collector on loopback receives the spans the API and its workers export (protobuf, decoded
with the opentelemetry-proto classes); an event posted to the API is followed from its ingest span to
the worker's projection span through the ``traceparent`` the record carries in its Kafka headers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from hub.demo.identifiers import nhs_number
from hub.kafka.broker import free_port
from tests.support import bearer, hub_env, ready, spawn, stop, wait_until

pytestmark = pytest.mark.broker
NHS = nhs_number(7)
BORN = "2019-03-14"
NAME = "Ffion Traceable-Jones"


class Collector:
    """An OTLP/HTTP traces endpoint: every span received, with its process's ``service.name``."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                collector.add(request)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def add(self, request: ExportTraceServiceRequest) -> None:
        with self.lock:
            for resource_spans in request.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope in resource_spans.scope_spans:
                    for span in scope.spans:
                        self.spans.append({
                            "service": resource.get("service.name"), "name": span.name,
                            "trace_id": span.trace_id.hex(),
                            "attributes": {a.key: str(a.value) for a in span.attributes}})

    def received(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.spans)


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    thread = threading.Thread(target=c.server.serve_forever, daemon=True)
    thread.start()
    yield c
    c.server.shutdown()
    c.server.server_close()


def events() -> list[dict[str, Any]]:
    service = {"agency_id": "7A6", "sector": "health", "service_name": "Physiotherapy"}
    at = datetime(2026, 10, 1, 9, tzinfo=UTC).isoformat()
    subject = {"system": "nhs-number", "value": NHS}
    return [{"record_type": "AttendanceRecorded", "sector": "health", "source_system": "abuhb-pas",
             "source_id": "att-trace-1", "occurred_at": at, "subject": subject,
             "body": {"appointment_id": "appt-trace-1", "outcome": "attended", "service": service}},
            {"record_type": "ReportIssued", "sector": "health", "source_system": "abuhb-pas",
             "source_id": "rep-trace-1", "occurred_at": at, "subject": subject, "category": "clinical",
             "body": {"report_id": "rep-trace-1", "report_kind": "physiotherapy", "service": service,
                      "title": f"Physiotherapy report for {NAME}, born {BORN}"}}]


def test_an_events_ingest_and_projection_spans_share_one_trace_and_hold_no_identifiers(
        tmp_path: Path, collector: Collector) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = hub_env(data_dir=tmp_path / "data", api_port=port, tracing_exporter="otlp",
                  tracing_otlp_endpoint=collector.url)
    env["OTEL_BSP_SCHEDULE_DELAY"] = "200"  # the batch processor's export interval (ms): the SDK's own setting
    log = tmp_path / "hub.log"
    proc = spawn(["up"], env, log)
    try:
        wait_until(lambda: ready(base) or proc.poll() is not None, 60, "hub up to be ready")
        assert proc.poll() is None, log.read_text()[-3000:]
        coordinator = bearer("coordinator", "cc-1")
        household = httpx.post(f"{base}/v1/households", json={"coordinator_id": "cc-1"}, headers=coordinator,
                               timeout=10).json()["household_id"]
        child = httpx.post(f"{base}/v1/households/{household}/members", headers=coordinator, timeout=10,
                           json={"kind": "child", "relationship": "child", "date_of_birth": BORN}).json()["member_id"]
        linked = httpx.post(f"{base}/v1/households/{household}/members/{child}/identifiers", headers=coordinator,
                            json={"system": "nhs-number", "value": NHS, "reason": "enrolled"}, timeout=10)
        assert linked.status_code == 202, linked.text
        accepted = httpx.post(f"{base}/v1/events", headers=bearer("agency", "abuhb-pas", agency="7A6"),
                              json=events(), timeout=30)
        assert accepted.status_code == 200, accepted.text

        def followed() -> set[str]:
            spans = collector.received()
            ingest = {s["trace_id"] for s in spans if s["service"] == "familyhub-api"
                      and s["name"] == "publish hub.ingest.health"}
            return ingest & {s["trace_id"] for s in spans if s["service"] == "familyhub-worker"
                             and s["name"] == "project"}
        try:
            wait_until(followed, 60, "the worker's projection span in the ingest request's trace")
        except AssertionError as exc:
            seen = sorted({(s["service"], s["name"]) for s in collector.received()})
            raise AssertionError(f"{exc}; spans received: {seen}") from None
    finally:
        stop(proc)

    spans = collector.received()
    (trace_id,) = followed()
    in_trace = [s for s in spans if s["trace_id"] == trace_id]
    assert {s["service"] for s in in_trace} >= {"familyhub-api", "familyhub-worker"}
    assert any(s["service"] == "familyhub-api" and s["name"].startswith("POST /v1/events") for s in in_trace), \
        sorted((s["service"], s["name"]) for s in in_trace)  # the request's server span opens the trace
    for span in spans:
        for key, value in span["attributes"].items():
            for secret in (NHS, BORN, NAME, "Traceable"):
                assert secret not in value, (span["service"], span["name"], key)
