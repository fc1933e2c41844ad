"""The CloudEvents 1.0 envelope in Kafka binary mode: the Avro record is the value, the attributes
are ``ce_*`` headers. ``ce_subject`` and the Kafka key are the pseudonymous subject, never an NHS
number or UPN. Extensions: ``ce_hubeventid`` (stable across versions), ``ce_hubversion`` (source
version), ``ce_hubreceived`` (when the hub accepted it).

:class:`HeaderBuilder` is the one place the headers are made: the ingest service builds one per
accepted batch (the receive time and each source's ``ce_source`` are encoded once), and
:func:`headers` is the same for a single event. :func:`deadletter_headers` adds the Kafka Connect
style ``__connect.errors.*`` headers of a dead-lettered record.
"""

from __future__ import annotations

from datetime import datetime

CONTENT_TYPE = "application/avro"
SPECVERSION = "1.0"

_SPECVERSION_B = SPECVERSION.encode()
_CONTENT_TYPE_B = CONTENT_TYPE.encode()


def iso(ts: datetime) -> str:
    """A CloudEvents time: ISO 8601 to the millisecond, UTC written as ``Z``."""
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ce_id(event_id: str, version: int) -> str:
    return f"{event_id}.{version}"


def source_uri(source_system: str) -> str:
    return f"urn:familyhub:source:{source_system}"


class HeaderBuilder:
    """Builds the CloudEvents headers of events received together, reusing their constant parts."""

    __slots__ = ("received", "sources")

    def __init__(self, received_at: datetime) -> None:
        self.received = iso(received_at).encode()
        self.sources: dict[str, bytes] = {}

    def build(self, event_id: str, version: int, source_system: str, ce_type: str, occurred_at: datetime,
              subject: str) -> list[tuple[str, bytes]]:
        source = self.sources.get(source_system)
        if source is None:
            source = self.sources[source_system] = source_uri(source_system).encode()
        event_id_b = event_id.encode()
        version_b = str(version).encode()
        return [
            ("ce_specversion", _SPECVERSION_B),
            ("ce_id", event_id_b + b"." + version_b),
            ("ce_source", source),
            ("ce_type", ce_type.encode()),
            ("ce_time", iso(occurred_at).encode()),
            ("ce_subject", subject.encode()),
            ("content-type", _CONTENT_TYPE_B),
            ("ce_hubeventid", event_id_b),
            ("ce_hubversion", version_b),
            ("ce_hubreceived", self.received),
        ]


def headers(*, event_id: str, version: int, source_system: str, ce_type: str, occurred_at: datetime,
            subject: str, received_at: datetime) -> list[tuple[str, bytes]]:
    """The CloudEvents headers of one event."""
    return HeaderBuilder(received_at).build(event_id, version, source_system, ce_type, occurred_at, subject)


def deadletter_headers(original: list[tuple[str, bytes]], topic: str, partition: int, offset: int,
                       exc: BaseException) -> list[tuple[str, bytes]]:
    """Kafka Connect style error headers, after the original headers."""
    return [*original,
            ("__connect.errors.topic", topic.encode()),
            ("__connect.errors.partition", str(partition).encode()),
            ("__connect.errors.offset", str(offset).encode()),
            ("__connect.errors.exception.class.name", type(exc).__name__.encode()),
            ("__connect.errors.exception.message", str(exc)[:500].encode())]


def as_dict(pairs: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...]) -> dict[str, str]:
    return {k: (v.decode() if isinstance(v, bytes | bytearray) else str(v)) for k, v in pairs}
