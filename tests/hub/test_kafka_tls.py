"""Kafka over TLS for every client the hub makes: topic admin, the publisher, the stream worker and an
aiokafka consumer built from the same options, through a TLS-terminating proxy (mutual TLS) in
front of the embedded broker; a client without the CA, without a client certificate, or speaking
plaintext to the TLS port is refused."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from hub.core.errors import BrokerError
from hub.core.events import InboundEvent, SubjectRef
from hub.core.settings import Settings
from hub.db.store import Store
from hub.demo.identifiers import nhs_number
from hub.ingest.services import Services
from hub.kafka.broker import EmbeddedBroker, free_port
from hub.kafka.publisher import Publisher
from hub.kafka.topics import CATALOGUE, INGEST_HEALTH, client_args, ensure_topics
from hub.stream import readmodel
from tests.support import hub_env, spawn, stop, wait_until
from tests.tls_support import TlsFiles, TlsProxy, make_tls_files

pytestmark = pytest.mark.broker
SLT = {"agency_id": "7A6", "agency_name": None, "sector": "health", "service_code": None, "service_name": "SLT"}


@dataclass(frozen=True)
class TlsBroker:
    broker: EmbeddedBroker
    proxy: TlsProxy
    files: TlsFiles


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[TlsBroker]:
    files = make_tls_files(tmp_path / "tls")
    port = free_port()
    broker = EmbeddedBroker(advertised=f"127.0.0.1:{port}").start()
    proxy = TlsProxy(port, (broker.host, broker.port), files).start()
    yield TlsBroker(broker, proxy, files)
    proxy.stop()
    broker.stop()


def tls_settings(tmp_path: Path, tls: TlsBroker, **overrides: Any) -> Settings:
    options: dict[str, Any] = {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": str(tls.files.ca),
                               "kafka_ssl_certfile": str(tls.files.client_cert),
                               "kafka_ssl_keyfile": str(tls.files.client_key)} | overrides
    return Settings(kafka_bootstrap=tls.proxy.address, kafka_embedded=True, data_dir=tmp_path / "data",
                    database_url=f"sqlite:///{tmp_path / 'hub.db'}", pseudonym_key="test-key-0123456789abcdef",
                    **options)


def events(n: int) -> list[InboundEvent]:
    nhs = SubjectRef("nhs-number", nhs_number(7))
    link = InboundEvent(record_type="IdentityLinked", sector="hub", source_system="enrolment",
                        source_id="link-child-tls", occurred_at=datetime(2026, 9, 1, tzinfo=UTC), subject=nhs,
                        body={"action": "link", "child_id": "child-tls", "household_id": "hh-tls",
                              "identifier_system": "nhs-number"})
    return [link, *(InboundEvent(record_type="ReferralMade", sector="health", source_system="pas", source_id=f"r{i}",
                                 occurred_at=datetime(2026, 9, 2 + i, tzinfo=UTC), subject=nhs,
                                 body={"service": SLT}) for i in range(n))]


async def accept_over_tls(settings: Settings) -> Services:
    svc = Services.build(settings)
    await svc.start()
    try:
        acceptances = await svc.ingest.accept(events(3))
    finally:
        await svc.stop()
    assert [a.status for a in acceptances] == ["accepted"] * 4
    assert svc.store.log_count(unpublished_only=True) == 0  # the broker acknowledged every record
    return svc


async def read_back(settings: Settings, topic: str) -> list[Any]:
    consumer = AIOKafkaConsumer(topic, **client_args(settings), auto_offset_reset="earliest",  # type: ignore[arg-type]
                                enable_auto_commit=False)
    await consumer.start()
    try:
        out: list[Any] = []
        while batch := await consumer.getmany(timeout_ms=1500):
            for msgs in batch.values():
                out.extend(msgs)
        return out
    finally:
        await consumer.stop()


def test_topics_publisher_and_worker_work_over_tls(tmp_path: Path, tls_broker: TlsBroker) -> None:
    settings = tls_settings(tmp_path, tls_broker)
    created = asyncio.run(ensure_topics(settings))
    assert sorted(created) == sorted(t.name for t in CATALOGUE)
    Store.open(settings.effective_database_url)  # migrate before the worker starts
    env = hub_env(kafka_bootstrap=settings.kafka_bootstrap, kafka_embedded="true", data_dir=settings.data_dir,
                  database_url=settings.effective_database_url, worker_name="tls0",
                  kafka_security_protocol="SSL", kafka_ssl_cafile=settings.kafka_ssl_cafile,
                  kafka_ssl_certfile=settings.kafka_ssl_certfile, kafka_ssl_keyfile=settings.kafka_ssl_keyfile)
    worker = spawn(["worker"], env, tmp_path / "worker.log")
    try:
        store = asyncio.run(accept_over_tls(settings)).store
        records = asyncio.run(read_back(settings, INGEST_HEALTH.name))
        assert len(records) == 3 and all(r.key for r in records)
        rows = wait_until(lambda: readmodel.timeline(store, "hh-tls")[0], timeout=60,
                          what="the worker projecting the records it read over TLS")
        assert {r["record_type"] for r in rows} == {"ReferralMade"}
        wait_until(lambda: len(readmodel.timeline(store, "hh-tls")[0]) == 3, what="all three entries")
    finally:
        stop(worker)
    assert tls_broker.proxy.tls_sessions >= 4  # admin, publisher, consumer and the worker all came through TLS


@pytest.mark.parametrize("how", ["no-ca", "no-client-certificate", "plaintext"])
def test_clients_that_cannot_do_this_tls_are_refused(tmp_path: Path, tls_broker: TlsBroker, how: str) -> None:
    overrides: dict[str, Any] = {
        "no-ca": {"kafka_ssl_cafile": ""},
        "no-client-certificate": {"kafka_ssl_certfile": "", "kafka_ssl_keyfile": ""},
        "plaintext": {"kafka_security_protocol": "PLAINTEXT"},
    }[how]
    settings = tls_settings(tmp_path, tls_broker, **overrides)
    with pytest.raises(BrokerError):
        asyncio.run(ensure_topics(settings))

    async def publish() -> None:
        publisher = Publisher(settings)
        try:
            await publisher.start()
        finally:
            await publisher.stop()

    with pytest.raises(Exception):  # noqa: B017 - aiokafka's connection error, whichever it is
        asyncio.run(asyncio.wait_for(publish(), 30))
