"""Helpers for the HTTP ingest tests (imported by name; unique to avoid clashing with other helpers)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from hub.ingest.services import Services
from hub.kafka.topics import end_offsets

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "connectors" / "fixtures"
#: Every synthetic NHS number / UPN / LA id in the fixtures: no answer may contain one.
IDENTIFIERS = (
    "9990000018",
    "9990000026",
    "9990000034",
    "9990000019",
    "9990000027",
    "1234567890",
    "C873123456700",
    "C873123456701",
    "H201123456700",
    "LA-100234",
)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def assert_not_in_bytes(raw: bytes) -> None:
    for value in IDENTIFIERS:
        assert value.encode() not in raw, value


def assert_no_identifiers(text: Any) -> None:
    rendered = str(text)
    for value in IDENTIFIERS:
        assert value not in rendered, value
    assert not re.search(r"(?<![\d.])\d{10}(?![\d.])", rendered), rendered
    assert not re.search(r"\b[A-HJ-NP-TV-Z]\d{12}\b", rendered), rendered  # UPN-shaped


async def consume_all(bootstrap: str, topic: str, timeout: float = 15.0) -> list[Any]:
    """Every message on ``topic`` when called: each partition read from its beginning to its end offset (what
    the hub's own tools read: :func:`hub.kafka.topics.end_offsets`), not until the topic has been quiet a while."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # the cluster's metadata, so the topic's partitions are known
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        assert parts, f"no topic {topic} on the broker"
        ends = await end_offsets(consumer, parts)
        begin = await consumer.beginning_offsets(parts)
        consumer.assign(parts)
        for tp in parts:
            consumer.seek(tp, begin[tp])
        out: list[Any] = []
        pending = {tp for tp in parts if ends[tp] > begin[tp]}
        deadline = asyncio.get_running_loop().time() + timeout
        while pending:
            assert asyncio.get_running_loop().time() < deadline, f"{topic} was not read to its end in {timeout} s"
            batch = await consumer.getmany(*pending, timeout_ms=500)
            for tp, msgs in batch.items():
                out.extend(m for m in msgs if m.offset < ends[tp])
                if msgs and msgs[-1].offset + 1 >= ends[tp]:
                    pending.discard(tp)
        return out
    finally:
        await consumer.stop()


async def records_on(services: Services, topic: str) -> list[dict[str, Any]]:
    """The decoded Avro records on a topic, each with ``_type`` (record type) and ``_key``."""
    serde = services.serde  # opens the sealed values with the subjects' data keys
    out = []
    for msg in await consume_all(services.settings.kafka_bootstrap, topic):
        decoded = serde.decode(msg.value)
        out.append(
            {
                **decoded.record,
                "_type": decoded.record_type,
                "_key": msg.key.decode(),
                "_raw": msg.value + msg.key + b"".join(v for _, v in msg.headers),
            }
        )
    return out
