"""The coordination sweep as it runs in production: a real broker and a real worker process, which hosts
the coordination job; the Lewis household's seed journey is accepted by the ingest service, and the
alerts it calls for appear, in event time, with nothing called by hand."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub.core.settings import Settings
from hub.db.store import Store
from hub.demo import scenario
from hub.ingest.services import Services
from hub.kafka.broker import EmbeddedBroker
from hub.kafka.topics import ensure_topics
from hub.sharing.alerts import list_alerts
from tests.support import hub_env, keys_of, spawn, stop, wait_until

pytestmark = pytest.mark.broker


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Settings]:
    broker = EmbeddedBroker().start()
    settings = Settings(kafka_bootstrap=broker.bootstrap, kafka_embedded=True, data_dir=tmp_path / "data",
                        database_url=f"sqlite:///{tmp_path / 'hub.db'}", pseudonym_key="test-key-0123456789abcdef")
    asyncio.run(ensure_topics(settings))
    Store.open(settings.effective_database_url)
    env = hub_env(kafka_bootstrap=broker.bootstrap, kafka_embedded="true", data_dir=tmp_path / "data",
                  database_url=settings.effective_database_url, worker_name="w0", sharing_coordination_interval=1)
    worker = spawn(["worker"], env, tmp_path / "worker.log")
    yield settings
    stop(worker)
    broker.stop()


def test_the_worker_raises_the_lewis_familys_alerts_in_event_time(stack: Settings) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    lewis = [e for e in scenario.build(now).events if "lewis" in str(e.body.get("child_id", "")) or
             e.subject in scenario.build(now).people[3].identifiers]

    async def accept() -> None:
        services = Services.build(stack)
        await services.start()
        try:
            await services.ingest.accept(lewis)
        finally:
            await services.stop()

    asyncio.run(accept())
    store = keys_of(Store.open(stack.effective_database_url), stack.data_dir)  # alerts are sealed with its keys
    kinds = {"missed_appointments", "discharge_no_follow_up", "waiting_over_estimate", "statutory_clock"}
    wait_until(lambda: kinds <= {a["kind"] for a in list_alerts(store, household_id="household-lewis",
                                                                 open_only=False)}, 60, "the Lewis alerts")
    (missed,) = list_alerts(store, household_id="household-lewis", kind="missed_appointments", open_only=False)
    assert missed["created_at"] == now + timedelta(days=-296) and missed["state"] == "resolved"
    (portage,) = list_alerts(store, household_id="household-lewis", kind="waiting_over_estimate")
    assert portage["created_at"] == now + timedelta(days=-195) and portage["state"] == "open"
