"""Against real Apache Kafka (KRaft) and a Confluent-compatible schema registry, in containers.

Runs where a Docker engine answers; skips with the reason where none does (this project's dev
machines and CI have the docker client only). When it runs it registers a hub Avro schema,
produces one Confluent-framed record (magic 0, 4-byte schema id, Avro body) to a hub ingest topic
with acks=all and idempotence, consumes it back and decodes it with the schema fetched by id.
It uses aiokafka and fastavro directly, not the hub package.
"""

from __future__ import annotations

import asyncio
import io
import json
import struct
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
SCHEMA_FILE = REPO / "schemas" / "uk.familyhub.event.ReferralMade.avsc"

KAFKA_IMAGE = "confluentinc/cp-kafka:7.7.1"
REGISTRY_IMAGE = "confluentinc/cp-schema-registry:7.7.1"
#: A hub ingest topic name as the topic catalogue spells them (dots and hyphens, no `__`).
TOPIC = "hub.ingest.health"
CE_TYPE = "referral.made"


def docker_engine_or_skip() -> None:
    try:
        import docker

        client = docker.from_env(timeout=5)
        client.ping()
        client.close()
    except Exception as exc:  # DockerException, ConnectionError, FileNotFoundError, ...
        pytest.skip(f"no Docker engine answers: {type(exc).__name__}: {exc}")


@pytest.fixture(scope="module")
def stack():
    docker_engine_or_skip()
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.network import Network
    from testcontainers.kafka import KafkaContainer

    with Network() as network:
        kafka = KafkaContainer(KAFKA_IMAGE).with_kraft().with_network(network).with_network_aliases("kafka")
        with kafka:
            registry = (
                DockerContainer(REGISTRY_IMAGE)
                .with_network(network)
                .with_network_aliases("schema-registry")
                .with_env("SCHEMA_REGISTRY_HOST_NAME", "schema-registry")
                .with_env("SCHEMA_REGISTRY_LISTENERS", "http://0.0.0.0:8081")
                .with_env("SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS", "PLAINTEXT://kafka:9092")
                .with_env("SCHEMA_REGISTRY_KAFKASTORE_TOPIC_REPLICATION_FACTOR", "1")
                .with_env("SCHEMA_REGISTRY_SCHEMA_COMPATIBILITY_LEVEL", "full_transitive")
                .with_exposed_ports(8081)
            )
            with registry:
                url = f"http://{registry.get_container_host_ip()}:{registry.get_exposed_port(8081)}"
                _wait_http(url + "/subjects", timeout=120)
                yield {"bootstrap": kafka.get_bootstrap_server(), "registry": url}


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = exc
        time.sleep(1)
    raise TimeoutError(f"{url} not ready after {timeout}s: {last}")


def _http_json(method: str, url: str, body: Any | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/vnd.schemaregistry.v1+json"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def test_avro_record_round_trip_through_kafka_kraft_and_registry(stack: dict[str, str]) -> None:
    import fastavro
    from fastavro.schema import load_schema
    from fastavro.utils import generate_one

    # The full schema, named types (Meta, Service, ...) resolved from schemas/.
    schema_dict = load_schema(str(SCHEMA_FILE), _write_hint=False)
    subject = f"{TOPIC}-value"
    registered = _http_json(
        "POST",
        f"{stack['registry']}/subjects/{subject}/versions",
        {"schemaType": "AVRO", "schema": json.dumps(schema_dict)},
    )
    schema_id = int(registered["id"])

    parsed = fastavro.parse_schema(schema_dict)
    record = generate_one(parsed)
    body = io.BytesIO()
    fastavro.schemaless_writer(body, parsed, record)
    value = b"\x00" + struct.pack(">I", schema_id) + body.getvalue()
    key = b"pseudonymous-subject-0001"
    headers = [("ce_type", CE_TYPE.encode()), ("content-type", b"application/avro")]

    received = asyncio.run(_produce_and_consume(stack["bootstrap"], key, value, headers))

    assert received.key == key
    assert dict(received.headers)["ce_type"] == CE_TYPE.encode()
    magic, got_id = received.value[0], struct.unpack(">I", received.value[1:5])[0]
    assert magic == 0 and got_id == schema_id
    fetched = _http_json("GET", f"{stack['registry']}/schemas/ids/{got_id}")
    reader = fastavro.parse_schema(json.loads(fetched["schema"]))
    decoded = fastavro.schemaless_reader(io.BytesIO(received.value[5:]), reader, parsed)
    # Logical types come back as Python values (timestamp-millis -> datetime): compare with a local
    # decode of the bytes we sent, and re-encode to check the bytes survived unchanged.
    expected = fastavro.schemaless_reader(io.BytesIO(body.getvalue()), parsed, parsed)
    assert decoded == expected
    again = io.BytesIO()
    fastavro.schemaless_writer(again, parsed, decoded)
    assert again.getvalue() == body.getvalue()


async def _produce_and_consume(bootstrap: str, key: bytes, value: bytes, headers):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # One broker here; the catalogue uses RF 3 / min ISR 2 against the real cluster.
        await admin.create_topics([NewTopic(TOPIC, num_partitions=6, replication_factor=1)])
    finally:
        await admin.close()

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        meta = await producer.send_and_wait(TOPIC, value=value, key=key, headers=headers)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap,
        group_id="deploy-test",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            for tp, records in batch.items():
                for rec in records:
                    if tp.partition == meta.partition and rec.offset == meta.offset:
                        return rec
        raise TimeoutError("produced record was not consumed within 60s")
    finally:
        await consumer.stop()


def test_skip_reason_names_the_missing_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe turns an unreachable engine into a skip that says why (runs without Docker too)."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(pytest.skip.Exception, match="no Docker engine answers"):
        docker_engine_or_skip()
