"""connectors.client.HubClient against the real app served by uvicorn (real broker, both databases)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from api_helpers import fixture, records_on

from connectors.client import HubClient
from hub.api.app import create_app
from hub.core.errors import ValidationError
from hub.core.settings import Settings
from hub.governance.auth import TokenService
from hub.ingest.services import Services
from hub.kafka.broker import EmbeddedBroker, free_port
from hub.kafka.topics import ensure_topics

pytestmark = pytest.mark.broker
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def served(db_url: str, tmp_path: Path) -> Iterator[tuple[str, Services]]:
    """The app on a free port in a thread of its own (its lifespan starts the publisher there)."""
    broker = EmbeddedBroker().start()
    settings = Settings(
        kafka_bootstrap=broker.bootstrap,
        kafka_embedded=True,
        database_url=db_url,
        data_dir=tmp_path / "data",
        schema_dir=ROOT / "schemas",
        pseudonym_key="k" * 32,
    )
    asyncio.run(ensure_topics(settings))
    services = Services.build(settings)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(services), host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    yield f"http://127.0.0.1:{port}", services
    server.should_exit = True
    thread.join(10)
    services.store.engine.dispose()
    broker.stop()


def agency_token(services: Services) -> str:
    return TokenService(services.settings).create("abuhb-pas", "agency", agency="7A6")


def test_client_without_a_token_is_refused(served: tuple[str, Services]) -> None:
    base, _services = served
    with HubClient(base) as client, pytest.raises(Exception, match="401"):
        client.send_social_care([json.loads(fixture("social_care/cp-plan-started.json"))])


class LostAnswers(httpx.HTTPTransport):
    """Lets the first ``n`` requests reach the hub, then loses their answers (the client sees a 503)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.lose = n
        self.calls = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        response = super().handle_request(request)
        if self.lose:
            self.lose -= 1
            response.read()
            response.close()
            return httpx.Response(503, headers={"Retry-After": "0"}, request=request)
        return response


def test_client_retries_a_batch_without_duplicating_it(served: tuple[str, Services]) -> None:
    base, services = served
    event = json.loads(fixture("social_care/cp-plan-started.json"))
    events = [{**event, "event_id": f"NPT-CP-{i:04d}"} for i in range(7)]
    transport = LostAnswers(1)
    with HubClient(base, token=agency_token(services), transport=transport, batch_size=5,
                   sleep=lambda _: None) as client:
        results = client.send_social_care(events)
    assert [r.attempts for r in results] == [2, 1] and transport.calls == 3
    first = results[0].body
    assert first["duplicates"] == 5 and first["accepted"] == 0  # the retry found the lost batch's events
    assert results[1].body["accepted"] == 2
    records = asyncio.run(records_on(services, "hub.ingest.social-care"))
    assert sorted(r["meta"]["source_id"] for r in records) == [e["event_id"] for e in events]


def test_client_sends_all_three_sectors(served: tuple[str, Services]) -> None:
    base, services = served
    with HubClient(base, token=agency_token(services)) as client:
        [h] = client.send_health(json.loads(fixture("health/bundle-message-appointments.json")))
        [e] = client.send_education(fixture("education/send-events.csv").decode())
        resources = [
            entry["resource"] for entry in json.loads(fixture("health/bundle-collection-cerys.json"))["entry"]
        ]
        batches = client.send_health(resources)
        with pytest.raises(ValidationError, match="HTTP 415"):
            client._post("/v1/ingest/education", b"{}", "text/plain")
    assert h.status_code == 200 and h.body["accepted"] == 3
    assert (
        e.status_code == 207 and e.body["accepted"] == 6 and {p["row"] for p in e.body["problems"]} == {7, 8}
    )
    assert batches[0].status_code == 200
    assert batches[0].body["accepted"] + batches[0].body["duplicates"] == 6  # appt-1001 was sent above
    assert len(asyncio.run(records_on(services, "hub.ingest.education"))) == 6
