"""The CloudEvents 1.0 envelope in Kafka binary mode: the record is the value, the attributes are
``ce_*`` headers and ``content-type``. ``ce_subject`` and the Kafka key are the pseudonymous subject, never an NHS
number or UPN. Extensions: ``ce_hubeventid`` (stable across versions), ``ce_hubversion`` (source
version), ``ce_hubreceived`` (when the hub accepted it). When a span is active (the ingest request's,
:mod:`hub.core.tracing`), W3C Trace Context's ``traceparent`` (and ``tracestate``) follow, as the
CloudEvents distributed-tracing extension carries them, so the worker and the deliverer continue the trace.

``content-type`` says what the value is, as the serde that wrote it declares: in the hub's own
deployments a sealed frame (``application/vnd.familyhub.sealed-avro; frame=1``: AES-256-GCM under the
subject's data key, :mod:`hub.wire.sealing`) whose plaintext is the Avro record; ``application/avro``
for an unsealed Avro record (single-object encoding, or the Confluent framing with a registry).
``ce_dataschema`` names the writer schema (``urn:familyhub:schema:<full name>:v<N>``, the released
file ``schemas/released/<full name>/v<N>.avsc``).

:class:`HeaderBuilder` is the one place the headers are made: the ingest service builds one per
accepted batch (the receive time and each source's ``ce_source`` are encoded once), and
:func:`headers` is the same for a single event. :func:`deadletter_headers` adds the Kafka Connect
style ``__connect.errors.*`` headers of a dead-lettered record.
"""

from __future__ import annotations

from datetime import datetime

from hub.core.tracing import current_headers

CONTENT_TYPE = "application/avro"  # an unsealed Avro record (hub.wire.serde.AVRO_CONTENT_TYPE)
SPECVERSION = "1.0"

_SPECVERSION_B = SPECVERSION.encode()


def iso(ts: datetime) -> str:
    """A CloudEvents time: ISO 8601 to the millisecond, UTC written as ``Z``."""
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ce_id(event_id: str, version: int) -> str:
    return f"{event_id}.{version}"


def source_uri(source_system: str) -> str:
    return f"urn:familyhub:source:{source_system}"


class HeaderBuilder:
    """Builds the CloudEvents headers of events received together, reusing their constant parts."""

    __slots__ = ("content_type", "received", "schemas", "sources", "trace")

    def __init__(self, received_at: datetime, content_type: str = CONTENT_TYPE) -> None:
        self.received = iso(received_at).encode()
        self.content_type = content_type.encode()
        self.sources: dict[str, bytes] = {}
        self.schemas: dict[str, bytes] = {}
        #: W3C ``traceparent`` (and ``tracestate``) of the span active when the batch was received
        self.trace = current_headers()

    def build(self, event_id: str, version: int, source_system: str, ce_type: str, occurred_at: datetime,
              subject: str, dataschema: str | None = None) -> list[tuple[str, bytes]]:
        source = self.sources.get(source_system)
        if source is None:
            source = self.sources[source_system] = source_uri(source_system).encode()
        event_id_b = event_id.encode()
        version_b = str(version).encode()
        out = [
            ("ce_specversion", _SPECVERSION_B),
            ("ce_id", event_id_b + b"." + version_b),
            ("ce_source", source),
            ("ce_type", ce_type.encode()),
            ("ce_time", iso(occurred_at).encode()),
            ("ce_subject", subject.encode()),
            ("content-type", self.content_type),
        ]
        if dataschema is not None:
            schema_b = self.schemas.get(dataschema)
            if schema_b is None:
                schema_b = self.schemas[dataschema] = dataschema.encode()
            out.append(("ce_dataschema", schema_b))
        out += [("ce_hubeventid", event_id_b), ("ce_hubversion", version_b), ("ce_hubreceived", self.received)]
        if self.trace:
            out += self.trace
        return out


def headers(*, event_id: str, version: int, source_system: str, ce_type: str, occurred_at: datetime,
            subject: str, received_at: datetime, content_type: str = CONTENT_TYPE,
            dataschema: str | None = None) -> list[tuple[str, bytes]]:
    """The CloudEvents headers of one event."""
    return HeaderBuilder(received_at, content_type).build(event_id, version, source_system, ce_type, occurred_at,
                                                          subject, dataschema)


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
