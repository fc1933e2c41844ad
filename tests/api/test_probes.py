"""The API's probes as an orchestrator and a scraper use them.

Readiness keeps agency ingest in service while the stream workers restart (none runs here); the
scraper's static credential opens /metrics and nothing else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from hub.api.app import create_app
from hub.core.settings import Settings
from hub.demo.identifiers import nhs_number
from hub.ingest.services import Services
from hub.kafka.broker import EmbeddedBroker
from hub.kafka.topics import ensure_topics
from tests.api.conftest import token_header

SCRAPER = "scraper-credential-0123456789abcdef"


@pytest.fixture
async def scraped(sqlite_url: str, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Services]]:
    """The real app with a metrics credential configured, on a broker of its own; no stream worker."""
    broker = EmbeddedBroker().start()
    settings = Settings(kafka_bootstrap=broker.bootstrap, kafka_embedded=True, database_url=sqlite_url,
                        data_dir=tmp_path / "data", pseudonym_key="k" * 32,
                        metrics_token=SCRAPER)  # type: ignore[arg-type]
    await ensure_topics(settings)
    services = Services.build(settings)
    await services.start()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(services)),
                                 base_url="http://hub.test") as client:
        yield client, services
    await services.stop()
    services.store.engine.dispose()
    broker.stop()


def event(nhs: str) -> dict[str, object]:
    return {"record_type": "AttendanceRecorded", "sector": "health", "source_system": "abuhb-pas",
            "source_id": "att-probe", "occurred_at": datetime(2026, 3, 2, 10, tzinfo=UTC).isoformat(),
            "subject": {"system": "nhs-number", "value": nhs},
            "body": {"appointment_id": "att-probe", "outcome": "attended",
                     "service": {"agency_id": "7A6", "sector": "health", "service_name": "Physiotherapy"}}}


async def test_the_api_is_ready_and_takes_ingest_while_no_worker_runs(
        scraped: tuple[httpx.AsyncClient, Services]) -> None:
    client, services = scraped
    assert services.store.workers() == []  # every worker is down (restarting)
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "workers_ready": 0}
    sent = await client.post("/v1/events", json=[event(nhs_number(7))],
                             headers=token_header(services, "agency", "abuhb-pas", agency="7A6"))
    assert sent.status_code == 200 and sent.json()[0]["status"] == "accepted", sent.text


async def test_the_scrapers_credential_opens_metrics_and_nothing_else(
        scraped: tuple[httpx.AsyncClient, Services]) -> None:
    client, _ = scraped
    scraper = {"Authorization": f"Bearer {SCRAPER}"}
    metrics = await client.get("/metrics", headers=scraper)
    assert metrics.status_code == 200 and "hub_ingest_accepted" in metrics.text
    # not a token anywhere else: not for a family's timeline, not for the agencies list
    assert (await client.get("/v1/households/h-1/timeline", headers=scraper)).status_code == 401
    assert (await client.get("/v1/agencies", headers=scraper)).status_code == 401
    # a near miss and no credential at all are refused on /metrics too
    assert (await client.get("/metrics", headers={"Authorization": f"Bearer {SCRAPER[:-1]}x"})).status_code == 401
    assert (await client.get("/metrics")).status_code == 401


async def test_without_a_configured_credential_no_static_token_opens_metrics(
        client: httpx.AsyncClient, services: Services) -> None:
    assert services.settings.metrics_token.get_secret_value() == ""
    assert (await client.get("/metrics", headers={"Authorization": "Bearer "})).status_code == 401
    assert (await client.get("/metrics", headers={"Authorization": f"Bearer {SCRAPER}"})).status_code == 401
