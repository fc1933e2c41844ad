"""The stream worker: a faust-streaming app that decodes ingest records and projects them.

Each batch from the ingest topics is opened and decoded with the sealing serde (:mod:`hub.sealing`);
a record of an erased subject (its data key shredded) is skipped and counted, never dead-lettered;
a record that cannot be decoded (bad framing, unknown fingerprint, corrupt body, a sealed value
that fails authentication) is dead-lettered — recorded in the database and
republished to ``hub.deadletter`` with ``__connect.errors.*`` headers — and the stream moves on, so
a poison message never stops it or loops. Decoded records go to :mod:`hub.projection` in one
transaction per batch; projections are idempotent, so a batch replayed after a crash or a
rebalance changes nothing twice. Several workers in one consumer group split the partitions.
Beside the stream, a task decides on sharing (:mod:`hub.sharing.runtime`); the worker also delivers
the shares unless ``HUB_DELIVERY_MODE`` is ``process`` (then ``hub deliver`` does).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import faust

from hub.core.errors import ErasedRecordError, SerdeError
from hub.core.logging import configure_logging, get_logger
from hub.core.settings import Settings
from hub.db.keyvault import sealed_serde
from hub.db.store import Store
from hub.kafka.publisher import OutgoingRecord, Publisher
from hub.kafka.security import faust_credentials
from hub.kafka.topics import DEADLETTER, INGEST_TOPICS
from hub.runtime import sharing_jobs as sharing_runtime
from hub.runtime.probes import serve_probes
from hub.stream import projection
from hub.wire.envelope import deadletter_headers
from hub.wire.schemas import SchemaCatalogue
from hub.wire.serde import Serde

log = get_logger(__name__)
GROUP_ID = "familyhub-worker"
BATCH = 1000


class Processor:
    """Decode-and-project logic of one worker, independent of faust so replay and tests share it."""

    def __init__(self, store: Store, serde: Serde, catalogue: SchemaCatalogue, publisher: Publisher | None,
                 on_projected: Callable[[], None] | None = None) -> None:
        self.store = store
        self.on_projected = on_projected
        self.serde = serde
        self.catalogue = catalogue
        self.publisher = publisher
        self.processed = 0
        self.dead_lettered = 0
        self.erased = 0

    async def handle(self, messages: list[tuple[str, int, int, bytes | None, bytes, list[tuple[str, bytes]]]]) -> None:
        decoded: list[tuple[str, str, dict[str, Any]]] = []
        dead: list[OutgoingRecord] = []
        for topic, partition, offset, key, value, headers in messages:
            try:
                d = self.serde.decode(value)
                decoded.append((d.record_type, self.catalogue.writer(d.record_type).ce_type, d.record))
            except ErasedRecordError:  # the subject's data key was shredded: skip, never dead-letter
                self.erased += 1
                log.info("worker.erased_record_skipped", topic=topic, partition=partition, offset=offset)
            except SerdeError as exc:
                key_text = key.decode(errors="replace") if key else None
                new = await asyncio.to_thread(self.store.add_dead_letter, topic=topic, partition=partition,
                                              offset=offset, key=key_text, value=value, headers=headers, error=exc)
                if new:
                    self.dead_lettered += 1
                    dead.append(OutgoingRecord(DEADLETTER.name, key_text or "", value,
                                               deadletter_headers(headers, topic, partition, offset, exc)))
                log.warning("worker.dead_lettered", topic=topic, partition=partition, offset=offset,
                            error=type(exc).__name__, reason=str(exc))
        if decoded:
            await asyncio.to_thread(projection.apply, self.store, decoded)
            if self.on_projected is not None:
                self.on_projected()
        if dead and self.publisher is not None:
            await self.publisher.publish(dead)
        self.processed += len(messages)


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
    store = Store.open(settings.effective_database_url, migrate_schema=False)
    publisher = Publisher(settings)
    projected = asyncio.Event()
    processor = Processor(store, sealed_serde(catalogue, settings, store), catalogue, publisher,
                          on_projected=projected.set)
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
        await publisher.start()

    @app.on_before_shutdown.connect  # type: ignore[misc,arg-type]
    async def _stop_publisher(sender: Any, **_: Any) -> None:
        await publisher.stop()  # the dead-letter producer: flushed and closed, never left to the collector
        await sharing_runtime.close()

    delivers = settings.worker_delivers  # HUB_DELIVERY_MODE=process: `hub deliver` delivers, this worker decides

    @app.task
    async def _follow_changes() -> None:
        await sharing_runtime.follow(store, worker_id, projected, deliver=delivers)

    if delivers:
        @app.timer(1.0)
        async def _deliver_shares() -> None:
            await sharing_runtime.tick(store, worker_id)

    if settings.probe_port:
        def probe(path: str) -> tuple[int, dict[str, Any]] | None:
            if path == "/healthz":
                return 200, {"status": "ok"}  # answered at all: the worker's event loop turns
            if path == "/readyz":
                ready = state["ready"] and app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
                return (200 if ready else 503), {"ready": ready}
            return None

        @app.task
        async def _serve_probes() -> None:
            runner = await serve_probes(probe, settings.api_host, settings.probe_port or 0)
            try:
                await asyncio.Event().wait()  # until the worker stops (the task is cancelled)
            finally:
                await runner.cleanup()

    @app.timer(1.0)
    async def _heartbeat() -> None:
        ready = state["ready"] and app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
        await asyncio.to_thread(store.heartbeat, worker_id, "ready" if ready else "recovering", processor.processed)

    return app


def run_worker(settings: Settings) -> None:
    """Run one worker in the foreground until SIGTERM/SIGINT."""
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    from faust.worker import Worker

    # keep the hub's own logging (JSON, identifiers scrubbed) instead of faust's handlers
    worker = Worker(app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False, override_logging=False)
    worker.execute_from_commandline()
