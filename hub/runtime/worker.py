"""The stream worker: a faust-streaming app that projects ingest records and hosts the worker's background jobs.

The agent takes the ingest topics in batches and hands each to :class:`hub.stream.batches.Processor`
(decode, dead-letter, project; one transaction per batch). Several workers in one consumer group
split the partitions. Beside the stream, one :class:`hub.core.jobs.Runner` runs the worker's jobs:
the heartbeat and the sharing jobs :func:`hub.runtime.placement.worker_jobs` chooses — the worker
decides on sharing, and also delivers the shares unless ``HUB_DELIVERY_MODE`` is ``process`` (then
``hub deliver`` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from typing import Any

import faust

from hub.core.jobs import Runner
from hub.core.logging import configure_logging, get_logger
from hub.core.settings import Settings
from hub.core.tracing import configure_from_settings
from hub.db.keyvault import sealed_serde
from hub.db.store import Store
from hub.kafka.publisher import Publisher
from hub.kafka.security import faust_credentials
from hub.kafka.topics import GROUP_ID, INGEST_TOPICS
from hub.runtime.heartbeat import HeartbeatJob
from hub.runtime.placement import worker_jobs
from hub.runtime.probes import serve_probes
from hub.stream.batches import Processor
from hub.wire.schemas import SchemaCatalogue
from hub.wire.serde import warm

log = get_logger(__name__)
BATCH = 1000
#: seconds a stopping worker gives its jobs to finish the pass in hand
STOP_TIMEOUT = 10.0


def _limit_fetch_wait(wait_ms: int) -> None:
    """faust hard-codes fetch_max_wait_ms=1500 for its worker consumer, and the embedded broker holds
    every fetch that long when the log is idle, so a new event could wait 1.5 s before a worker sees
    it. Set the worker consumer's wait from the settings instead (before it starts its fetcher)."""
    from faust.transport.drivers import aiokafka as driver

    original = driver.AIOKafkaConsumerThread._create_worker_consumer
    if getattr(original, "hub_fetch_wait", None) == wait_ms:
        return

    def create(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = wait_ms
        return consumer

    create.hub_fetch_wait = wait_ms  # type: ignore[attr-defined]
    driver.AIOKafkaConsumerThread._create_worker_consumer = create  # type: ignore[method-assign]


def create_app(settings: Settings, worker_id: str | None = None) -> faust.App:
    name = os.environ.get("HUB_WORKER_NAME") or socket.gethostname()
    worker_id = worker_id or f"{name}-{os.getpid()}"
    datadir = settings.data_dir / "worker" / name
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        GROUP_ID,
        broker=[f"kafka://{b}" for b in settings.kafka_bootstrap.split(",")],
        store=settings.worker_store,
        datadir=str(datadir),
        processing_guarantee=settings.processing_guarantee,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        producer_acks=-1,
        broker_commit_every=BATCH,
        broker_commit_interval=0.5,
        stream_wait_empty=False,
        broker_rebalance_timeout=settings.rebalance_timeout,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=min(3.0, settings.session_timeout / 3),
        broker_credentials=faust_credentials(settings),  # TLS / SASL, as every other Kafka client
    )
    _limit_fetch_wait(settings.fetch_wait_ms)
    catalogue = SchemaCatalogue(settings.schema_dir)
    store = Store.open(settings.effective_database_url, migrate_schema=settings.owns_database)
    publisher = Publisher(settings)
    projected = asyncio.Event()
    serde = sealed_serde(catalogue, settings, store)
    store.vault = serde.vault  # sealed columns of the projections use the same keys
    processor = Processor(store, serde, catalogue, publisher, on_projected=projected.set)
    state = {"ready": False}
    app.conf.hub_processor = processor  # type: ignore[attr-defined]

    topic = app.topic(*(t.name for t in INGEST_TOPICS), key_type=bytes, value_type=bytes,
                      key_serializer="raw", value_serializer="raw")

    @app.agent(topic)
    async def project(stream: Any) -> Any:
        async for batch in stream.take_events(BATCH, within=0.05):
            msgs = [(e.message.topic, e.message.partition, e.message.offset, e.message.key, e.message.value,
                     list(e.message.headers or [])) for e in batch]
            started = time.perf_counter()
            await processor.handle(msgs)
            log.debug("worker.batch", size=len(msgs), ms=round((time.perf_counter() - started) * 1000, 1))
            yield len(msgs)

    @app.on_rebalance_complete.connect  # type: ignore[misc,arg-type]
    async def _ready(sender: Any, **_: Any) -> None:
        state["ready"] = True

    @app.task
    async def _start_publisher() -> None:
        await asyncio.to_thread(warm, processor.serde)  # registry ids off the event loop, before batches need them
        await publisher.start()

    def worker_state() -> str:
        ready = state["ready"] and app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
        return "ready" if ready else "recovering"

    # HUB_DELIVERY_MODE=process: `hub deliver` delivers, this worker decides
    jobs = Runner([*worker_jobs(store, worker_id, deliver=settings.worker_delivers, projected=projected,
                               settings=settings),
                   HeartbeatJob(store, worker_id, worker_state, lambda: processor.processed)])

    @app.task
    async def _run_jobs() -> None:
        await jobs.run()

    @app.on_before_shutdown.connect  # type: ignore[misc,arg-type]
    async def _stop(sender: Any, **_: Any) -> None:
        await publisher.stop()  # the dead-letter producer: flushed and closed, never left to the collector
        jobs.stop()  # the passes in hand finish; the jobs give up their leases and close their HTTP client
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(jobs.stopped.wait(), STOP_TIMEOUT)

    if settings.probe_port:
        def probe(path: str) -> tuple[int, dict[str, Any]] | None:
            if path == "/healthz":
                return 200, {"status": "ok"}  # answered at all: the worker's event loop turns
            if path == "/readyz":
                ready = worker_state() == "ready"
                return (200 if ready else 503), {"ready": ready}
            if path == "/jobs":
                return 200, jobs.report()
            return None

        @app.task
        async def _serve_probes() -> None:
            runner = await serve_probes(probe, settings.api_host, settings.probe_port or 0)
            try:
                await asyncio.Event().wait()  # until the worker stops (the task is cancelled)
            finally:
                await runner.cleanup()

    return app


def run_worker(settings: Settings) -> None:
    """Run one worker in the foreground until SIGTERM/SIGINT."""
    configure_logging(settings.log_level, settings.log_format)
    configure_from_settings(settings, "familyhub-worker")
    app = create_app(settings)
    from faust.worker import Worker

    # keep the hub's own logging (JSON, identifiers scrubbed) instead of faust's handlers
    worker = Worker(app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False, override_logging=False)
    worker.execute_from_commandline()
