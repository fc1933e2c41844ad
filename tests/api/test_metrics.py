"""/metrics as Prometheus reads it: cheap to scrape, hub-wide gauges from one replica only, latencies in seconds.

Two API apps on one database and broker stand for two replicas; the background sampler is run pass by
pass, as its job would run it on its interval.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from api_helpers import fixture
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from hub.api import sampler as sampler_module
from hub.api.app import create_app
from hub.core.settings import Settings
from hub.db.schema import deliveries, timeline_entries
from hub.ingest.services import Services
from hub.kafka.broker import EmbeddedBroker
from hub.kafka.topics import ensure_topics
from tests.api.conftest import token_header

CSV = "text/csv"


class Replica:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.app: FastAPI = create_app(services)
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://hub.test")
        self.monitor = token_header(services, "monitor", "prometheus")

    async def scrape(self) -> dict[str, list[Any]]:
        r = await self.client.get("/metrics", headers=self.monitor)
        assert r.status_code == 200
        return {f.name: f.samples for f in text_string_to_metric_families(r.text)}

    async def sample(self) -> None:
        await self.app.state.metrics_sampler.run_once()


@pytest.fixture
async def replicas(sqlite_url: str, tmp_path: Path) -> AsyncIterator[tuple[Replica, Replica]]:
    broker = EmbeddedBroker().start()
    settings = Settings(kafka_bootstrap=broker.bootstrap, kafka_embedded=True, database_url=sqlite_url,
                        data_dir=tmp_path / "data", pseudonym_key="k" * 32)
    await ensure_topics(settings)
    one, two = Services.build(settings), Services.build(settings, migrate_schema=False)
    await one.start()
    await two.start()
    pair = Replica(one), Replica(two)
    yield pair
    for r in pair:
        await r.client.aclose()
        await r.app.state.metrics_sampler.close()
        await r.services.stop()
        r.services.store.engine.dispose()
    broker.stop()


async def ingest_education(replica: Replica) -> None:
    r = await replica.client.post("/v1/ingest/education", content=fixture("education/send-events.csv"),
                                  headers={"Content-Type": CSV,
                                           **token_header(replica.services, "agency", "abuhb-pas", agency="7A6")})
    assert r.status_code < 500, r.text


async def test_a_scrape_opens_no_consumer_and_queries_nothing(
        replicas: tuple[Replica, Replica], monkeypatch: pytest.MonkeyPatch) -> None:
    one, _ = replicas
    await one.sample()
    opened: list[str] = []
    real_lag = sampler_module.consumer_lag

    async def counting_lag(*args: Any, **kwargs: Any) -> dict[str, int]:
        opened.append("consumer")
        return await real_lag(*args, **kwargs)

    monkeypatch.setattr(sampler_module, "consumer_lag", counting_lag)
    statements: list[str] = []
    sa.event.listen(one.services.store.engine, "before_cursor_execute",
                    lambda *a, **k: statements.append(a[2]))
    for _ in range(5):
        await one.scrape()
    assert (opened, statements) == ([], [])
    await one.sample()  # the background pass is what reads the broker and the database
    assert opened == ["consumer"] and statements


async def test_hub_wide_gauges_come_from_one_replica_so_sums_count_once(replicas: tuple[Replica, Replica]) -> None:
    one, two = replicas
    await ingest_education(one)
    await one.sample()
    await two.sample()  # the other replica finds the lease held: it exports none of the hub-wide gauges
    first, second = await one.scrape(), await two.scrape()
    lag = {s.labels["topic"]: s.value for s in first["hub_consumer_lag"]}
    assert lag["hub.ingest.education"] == 6.0  # no worker runs: all six wait for the consumer group
    assert first["hub_dead_letters"][0].value == 0.0 and first["hub_deliveries_queued"][0].value == 0.0
    assert first["hub_workers_ready"][0].value == 0.0
    for name in ("hub_consumer_lag", "hub_dead_letters", "hub_workers_ready", "hub_ingest_unpublished"):
        assert name in first and name not in second, name
    # per-process counters stay with the process that counted them
    accepted = {s.labels["topic"]: s.value for s in first["hub_ingest_accepted"] if s.name.endswith("_total")}
    assert accepted == {"hub.ingest.education": 6.0}
    assert not [s for s in second.get("hub_ingest_accepted", []) if s.name.endswith("_total")]

    # the holder stops (a rolling restart): the other replica takes the lease and exports them instead
    await one.app.state.metrics_sampler.close()
    await two.sample()
    assert "hub_consumer_lag" in await two.scrape() and "hub_consumer_lag" not in await one.scrape()


async def test_ingest_latency_is_a_histogram_in_seconds_by_route(replicas: tuple[Replica, Replica]) -> None:
    one, _ = replicas
    await ingest_education(one)
    families = await one.scrape()
    samples = families["hub_ingest_duration_seconds"]
    count = [s for s in samples if s.name.endswith("_count")]
    assert [(s.labels["route"], s.value) for s in count] == [("/v1/ingest/education", 1.0)]
    buckets = [s for s in samples if s.name.endswith("_bucket")]
    assert {s.labels["le"] for s in buckets} >= {"0.005", "1.0", "+Inf"}  # seconds, not milliseconds
    assert {"hub_projection_delay_seconds", "hub_share_delivery_seconds"} <= set(families)


async def test_delivery_latency_is_observed_once_from_the_record(replicas: tuple[Replica, Replica]) -> None:
    one, _ = replicas
    accepted = datetime.now(UTC) - timedelta(seconds=60)
    event_id = str(uuid.uuid4())

    def delivered(channel: str, at: datetime) -> dict[str, Any]:
        return dict(delivery_id=str(uuid.uuid4()), kind="share", decision_id=str(uuid.uuid4()),
                    information_id=event_id, information_version=1, recipient_key=f"{channel}:7A6",
                    recipient_kind="service", child_id="c-1", household_id="h-1", state="delivered",
                    channel=channel, payload="{}", created_at=accepted, delivered_at=at)

    with one.services.store.engine.begin() as conn:
        conn.execute(timeline_entries.insert().values(
            event_id=event_id, subject="s-1", record_type="ReportIssued", ce_type="report.issued", sector="health",
            category="general", status="final", source_system="7A6/abuhb-pas", source_version=1,
            occurred_at=accepted, received_at=accepted, summary="Report", record="{}"))
        conn.execute(deliveries.insert().values(delivered("inbox", accepted + timedelta(seconds=1))))
    await one.sample()  # the first pass starts at the newest rows: what was delivered before is history
    at = datetime.now(UTC)
    with one.services.store.engine.begin() as conn:
        conn.execute(deliveries.insert().values(delivered("webhook", at)))
    await one.sample()
    await one.sample()  # a second pass observes nothing twice
    samples = (await one.scrape())["hub_share_delivery_seconds"]
    count = {s.labels["channel"]: s.value for s in samples if s.name.endswith("_count")}
    total = {s.labels["channel"]: s.value for s in samples if s.name.endswith("_sum")}
    assert count == {"webhook": 1.0}
    assert total["webhook"] == pytest.approx((at - accepted).total_seconds(), abs=0.01)  # from the record's times
