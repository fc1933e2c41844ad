"""The CloudEvents 1.0 envelope in Kafka binary mode: the Avro record is the value, the attributes
are ``ce_*`` headers. ``ce_subject`` and the Kafka key are the pseudonymous subject, never an NHS
number or UPN. Extensions: ``ce_hubeventid`` (stable across versions), ``ce_hubversion`` (source
version), ``ce_hubreceived`` (when the hub accepted it)."""

from __future__ import annotations

from datetime import datetime

CONTENT_TYPE = "application/avro"


def _iso(ts: datetime) -> str:
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ce_id(event_id: str, version: int) -> str:
    return f"{event_id}.{version}"


def headers(*, event_id: str, version: int, source_system: str, ce_type: str, occurred_at: datetime,
            subject: str, received_at: datetime) -> list[tuple[str, bytes]]:
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", ce_id(event_id, version).encode()),
        ("ce_source", f"urn:familyhub:source:{source_system}".encode()),
        ("ce_type", ce_type.encode()),
        ("ce_time", _iso(occurred_at).encode()),
        ("ce_subject", subject.encode()),
        ("content-type", CONTENT_TYPE.encode()),
        ("ce_hubeventid", event_id.encode()),
        ("ce_hubversion", str(version).encode()),
        ("ce_hubreceived", _iso(received_at).encode()),
    ]


def as_dict(pairs: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...]) -> dict[str, str]:
    return {k: (v.decode() if isinstance(v, bytes | bytearray) else str(v)) for k, v in pairs}
