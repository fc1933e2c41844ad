"""The cluster itself: Apache Kafka (KRaft) and a Confluent-compatible schema registry.

The hub's behaviour on that cluster (`hub up` with the registry's wire format, the family journeys,
restarts) is the scenario suite's ``kafka`` variant (tests/scenarios); this module checks the
cluster underneath with plain clients, so a broken broker or registry setup is told apart from a hub
fault. It uses the same containers (tests/scenarios/cluster.py), or the cluster named by
``HUB_TEST_KAFKA_BOOTSTRAP`` and ``HUB_TEST_SCHEMA_REGISTRY_URL``; without either it skips with the
reason no Docker engine answers (this project's dev machines and CI have the docker client only).
When it runs it registers a hub Avro schema, produces one Confluent-framed record (magic 0, 4-byte
schema id, Avro body) to a hub ingest topic with acks=all and idempotence, consumes it back and
decodes it with the schema fetched by id. It uses aiokafka and fastavro directly, not the hub package.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import struct
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.scenarios.cluster import Cluster, existing_kafka, kafka_in_containers, probe_docker

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
SCHEMA_FILE = REPO / "schemas" / "uk.familyhub.event.ReferralMade.avsc"

#: A hub ingest topic name as the topic catalogue spells them (dots and hyphens, no `__`).
TOPIC = "hub.ingest.health"
CE_TYPE = "referral.made"


def docker_engine_or_skip() -> None:
    reason = probe_docker()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def stack() -> Iterator[Cluster]:
    existing = existing_kafka()
    if existing is not None and existing.registry_url:
        yield existing
        return
    docker_engine_or_skip()
    with kafka_in_containers() as cluster:
        yield cluster


def _http_json(method: str, url: str, body: Any | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/vnd.schemaregistry.v1+json"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def test_avro_record_round_trip_through_kafka_kraft_and_registry(stack: Cluster) -> None:
    import fastavro
    from fastavro.schema import load_schema
    from fastavro.utils import generate_one

    # The full schema, named types (Meta, Service, ...) resolved from schemas/.
    schema_dict = load_schema(str(SCHEMA_FILE), _write_hint=False)
    subject = f"{TOPIC}-value"
    registered = _http_json(
        "POST",
        f"{stack.registry_url}/subjects/{subject}/versions",
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

    received = asyncio.run(_produce_and_consume(stack.bootstrap, stack.replication_factor, key, value, headers))

    assert received.key == key
    assert dict(received.headers)["ce_type"] == CE_TYPE.encode()
    magic, got_id = received.value[0], struct.unpack(">I", received.value[1:5])[0]
    assert magic == 0 and got_id == schema_id
    fetched = _http_json("GET", f"{stack.registry_url}/schemas/ids/{got_id}")
    reader = fastavro.parse_schema(json.loads(fetched["schema"]))
    decoded = fastavro.schemaless_reader(io.BytesIO(received.value[5:]), reader, parsed)
    # Logical types come back as Python values (timestamp-millis -> datetime): compare with a local
    # decode of the bytes we sent, and re-encode to check the bytes survived unchanged.
    expected = fastavro.schemaless_reader(io.BytesIO(body.getvalue()), parsed, parsed)
    assert decoded == expected
    again = io.BytesIO()
    fastavro.schemaless_writer(again, parsed, decoded)
    assert again.getvalue() == body.getvalue()


async def _produce_and_consume(bootstrap: str, replicas: int, key: bytes, value: bytes, headers):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # One broker in containers; the catalogue uses RF 3 / min ISR 2 against the real cluster.
        if TOPIC not in await admin.list_topics():  # a hub may have made it already
            await admin.create_topics([NewTopic(TOPIC, num_partitions=6, replication_factor=replicas)])
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
    with pytest.raises(pytest.skip.Exception, match=re.escape("no Docker engine answers at unix:///nonexistent/docker.sock")):
        docker_engine_or_skip()
