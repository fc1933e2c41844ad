"""Helpers for the HTTP ingest tests (imported by name; unique to avoid clashing with other helpers)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from hub.ingest.services import Services

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


async def consume_all(bootstrap: str, topic: str, timeout_ms: int = 1500) -> list[Any]:
    """Every message on ``topic`` (from the beginning), stopping once the topic is quiet."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        out: list[Any] = []
        while True:
            batch = await consumer.getmany(timeout_ms=timeout_ms)
            if not batch:
                return out
            for msgs in batch.values():
                out.extend(msgs)
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
