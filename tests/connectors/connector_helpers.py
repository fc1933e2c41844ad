"""Shared helpers for connector tests (imported by name; unique to avoid clashing with other conftests)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro.schema
import fastavro.validation

from hub.core.events import InboundEvent

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
#: Every synthetic identifier used in the fixtures: no message may contain one.
IDENTIFIERS = (
    "9990000018",
    "9990000026",
    "9990000034",
    "1234567890",
    "C873123456700",
    "C873123456701",
    "H201123456700",
    "LA-100234",
)


def avro_validate(event: InboundEvent) -> None:
    schema = fastavro.schema.load_schema(
        str(ROOT / "schemas" / f"uk.familyhub.event.{event.record_type}.avsc")
    )
    now = datetime.now(UTC)
    meta = {
        "event_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "source_system": event.source_system,
        "source_id": event.source_id,
        "source_version": event.source_version,
        "occurred_at": event.occurred_at,
        "received_at": now,
        "subject": "pseudonym",
        "category": event.category,
        "status": event.status,
        "mapping": event.mapping,
    }
    fastavro.validation.validate({"meta": meta, **event.body}, schema, raise_errors=True)


def assert_no_identifiers(text: Any) -> None:
    rendered = str(text)
    for value in IDENTIFIERS:
        assert value not in rendered
    assert not re.search(r"(?<!\d)\d{10}(?!\d)", rendered), rendered
