"""Avro framing: single-object encoding and the Confluent wire format, and typed errors on bad bytes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hub.core.errors import CorruptRecordError, UnknownFingerprintError
from hub.wire.registry import RegistryClient, RegistryConfig
from hub.wire.schemas import SchemaCatalogue
from hub.wire.serde import ConfluentSerde, SingleObjectSerde
from tests.hub.registry_server import TestRegistry

ROOT = Path(__file__).resolve().parents[2]
CAT = SchemaCatalogue(ROOT / "schemas")
NOW = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def report() -> dict[str, Any]:
    return {
        "meta": {"event_id": "e1", "source_system": "abuhb-docs", "source_id": "doc-1", "source_version": 2,
                 "occurred_at": NOW, "received_at": NOW, "subject": "s-abc", "category": "clinical",
                 "status": "active", "mapping": None},
        "report_id": "r1", "service": {"agency_id": "7A6", "agency_name": None, "sector": "health",
                                       "service_code": None, "service_name": "SLT"},
        "author": None, "report_kind": "speech_and_language_therapy", "title": "Assessment",
        "document_ref": None, "disclosure_hold": False, "third_party": None,
    }


def test_single_object_round_trip_and_framing() -> None:
    serde = SingleObjectSerde(CAT)
    data = serde.encode("ReportIssued", report())
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == CAT.writer("ReportIssued").fingerprint
    decoded = serde.decode(data)
    assert decoded.record_type == "ReportIssued"
    assert decoded.record == report()


@pytest.mark.parametrize(("data", "error", "message"), [
    (b"", CorruptRecordError, r"missing C3 01"),
    (b"{\"json\": true}", CorruptRecordError, "missing C3 01"),
    (b"\xc3\x01" + b"\x00" * 8 + b"\x02", UnknownFingerprintError, "unknown writer schema fingerprint"),
])
def test_bad_bytes_raise_typed_errors(data: bytes, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        SingleObjectSerde(CAT).decode(data)


def test_truncated_and_trailing_bytes_are_corrupt() -> None:
    serde = SingleObjectSerde(CAT)
    good = serde.encode("ReportIssued", report())
    with pytest.raises(CorruptRecordError, match=r"does not decode as uk\.familyhub\.event\.ReportIssued"):
        serde.decode(good[:-5])
    with pytest.raises(CorruptRecordError, match="trailing bytes"):
        serde.decode(good + b"\x00")


def test_record_not_fitting_the_schema_is_refused_with_the_schema_name() -> None:
    bad = report()
    bad["report_kind"] = "horoscope"
    with pytest.raises(Exception, match="ReportIssued"):
        SingleObjectSerde(CAT).encode("ReportIssued", bad)


def test_confluent_wire_format_registers_once_and_round_trips() -> None:
    reg = TestRegistry()
    try:
        serde = ConfluentSerde(CAT, RegistryClient(RegistryConfig(reg.url)))
        a = serde.encode("ReportIssued", report())
        b = serde.encode("ReportIssued", report())
        assert a[:1] == b"\x00" and a[1:5] == (1).to_bytes(4, "big")
        assert len(reg.requests) == 1  # the id is cached after the first registration
        fresh = ConfluentSerde(CAT, RegistryClient(RegistryConfig(reg.url)))
        assert fresh.decode(b).record == report()
        with pytest.raises(UnknownFingerprintError, match="schema id 99"):
            fresh.decode(b"\x00" + (99).to_bytes(4, "big") + b"\x00")
        with pytest.raises(CorruptRecordError, match="missing 00 magic"):
            fresh.decode(b"\xc3\x01" + b"\x00" * 10)
    finally:
        reg.close()
