from __future__ import annotations

import json

import httpx
import pytest

from connectors.client import HubClient, idempotency_key
from hub.core.errors import HubUnavailableError, ValidationError


class Recorder:
    def __init__(self, statuses, headers=None):
        self.statuses = list(statuses)
        self.headers = headers or {}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status = self.statuses.pop(0) if self.statuses else 202
        if isinstance(status, Exception):
            raise status
        return httpx.Response(status, json={"accepted": 1}, headers=self.headers if status == 429 else {})


def client(recorder, **kwargs):
    sleeps: list[float] = []
    hub = HubClient(
        "http://hub.test", token="t0k", transport=httpx.MockTransport(recorder), sleep=sleeps.append, **kwargs
    )
    return hub, sleeps


EVENTS = [{"event_type": "contact", "event_id": f"E{i}", "version": 1} for i in range(5)]


def test_batches_and_idempotency_keys():
    rec = Recorder([])
    hub, _ = client(rec, batch_size=2)
    results = hub.send_social_care(EVENTS)
    assert [len(json.loads(r.content)) for r in rec.requests] == [2, 2, 1]
    assert all(r.url.path == "/v1/ingest/social-care" for r in rec.requests)
    assert rec.requests[0].headers["Authorization"] == "Bearer t0k"
    assert rec.requests[0].headers["Content-Type"] == "application/json"
    keys = [r.headers["Idempotency-Key"] for r in rec.requests]
    assert len(set(keys)) == 3
    assert keys[0] == idempotency_key("/v1/ingest/social-care", rec.requests[0].content)
    assert [r.attempts for r in results] == [1, 1, 1]


def test_retries_5xx_with_backoff_then_succeeds_with_same_key():
    rec = Recorder([503, 502, 202])
    hub, sleeps = client(rec, backoff_initial=0.5)
    (result,) = hub.send_education(EVENTS)
    assert result.attempts == 3
    assert len(sleeps) == 2 and all(0 <= s <= 30 for s in sleeps)
    assert len({r.headers["Idempotency-Key"] for r in rec.requests}) == 1


def test_honours_retry_after_on_429():
    rec = Recorder([429, 202], headers={"Retry-After": "7"})
    hub, sleeps = client(rec)
    hub.send_education(EVENTS)
    assert sleeps == [7.0]


def test_retries_timeouts_and_connection_errors_then_gives_up():
    rec = Recorder([httpx.ConnectTimeout("slow"), httpx.ConnectError("down"), 500, 500])
    hub, sleeps = client(rec, max_attempts=4)
    with pytest.raises(HubUnavailableError, match="after 4 attempts"):
        hub.send_social_care(EVENTS)
    assert len(rec.requests) == 4 and len(sleeps) == 3


def test_never_retries_4xx():
    rec = Recorder([400])
    hub, sleeps = client(rec)
    with pytest.raises(ValidationError, match="HTTP 400"):
        hub.send_social_care(EVENTS)
    assert len(rec.requests) == 1 and sleeps == []


def test_health_bundle_and_csv():
    rec = Recorder([])
    hub, _ = client(rec)
    hub.send_health({"resourceType": "Bundle", "type": "collection"})
    hub.send_health([{"resourceType": "Appointment", "id": "a1"}])
    hub.send_education("event_type,event_id\n")
    assert [r.headers["Content-Type"] for r in rec.requests] == [
        "application/fhir+json",
        "application/fhir+json",
        "text/csv",
    ]
    assert json.loads(rec.requests[1].content)["type"] == "batch"
    assert rec.requests[0].url.path == "/v1/ingest/health"


def test_against_a_local_http_server():
    """A real socket: the client posts to a throwaway HTTP server that fails once with 503."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    seen: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((self.path, self.headers["Idempotency-Key"]))
            self.send_response(503 if len(seen) == 1 else 202)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"accepted": 5}')

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with HubClient(f"http://127.0.0.1:{server.server_port}", sleep=lambda s: None) as hub:
            (result,) = hub.send_social_care(EVENTS)
    finally:
        server.shutdown()
    assert result.body == {"accepted": 5} and result.attempts == 2
    assert seen[0] == seen[1] and seen[0][0] == "/v1/ingest/social-care"
