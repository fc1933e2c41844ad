"""Avro serialisation behind one small interface.

* :class:`SingleObjectSerde` (default): Avro single-object encoding, ``C3 01`` + the writer schema's
  8-byte little-endian CRC-64-AVRO fingerprint + the schemaless body. Needs no registry.
* :class:`ConfluentSerde` (when ``HUB_SCHEMA_REGISTRY_URL`` is set): ``00`` + 4-byte big-endian
  schema id + body; schemas registered under the record's full name (RecordNameStrategy, since a
  topic carries several record types).

Both resolve the writer's schema to the current schema of the same record type, so records written
by an older released version decode as the current shape. Bytes that cannot be decoded raise
:class:`~hub.errors.CorruptRecordError` or :class:`~hub.errors.UnknownFingerprintError`; callers
dead-letter them and move on.
"""

from __future__ import annotations

import io
import struct
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from hub.core.errors import CorruptRecordError, HubError, UnknownFingerprintError
from hub.wire.registry import RegistryClient, RegistryConfig
from hub.wire.schemas import SchemaCatalogue, SchemaVersion

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
AVRO_CONTENT_TYPE = "application/avro"  # an Avro record with its schema reference (single-object or Confluent)
CONFLUENT_MAGIC = b"\x00"


@dataclass(frozen=True)
class Decoded:
    record_type: str
    record: dict[str, Any]
    writer_version: int


class Serde(Protocol):
    #: what the encoded bytes are, as the ``content-type`` header says (hub.wire.envelope)
    content_type: str

    def encode(self, record_type: str, record: dict[str, Any]) -> bytes: ...

    def decode(self, data: bytes) -> Decoded: ...

    def encode_body(self, record_type: str, meta: dict[str, Any], body: bytes) -> bytes:
        """:meth:`encode` of ``{"meta": meta, **fields}`` where ``body`` is the fields' Avro bytes already
        (everything after ``meta``, as ``connectors.schemas.checked_body`` made them): only ``meta`` is
        encoded here."""
        ...


def _with_body(schema: SchemaVersion, meta: dict[str, Any], body: bytes) -> bytes:
    """The record's Avro bytes from its ``meta`` and its body's bytes."""
    if schema.meta_parsed is None:
        raise HubError(f"schema {schema.full_name} does not start with meta")
    buf = io.BytesIO()
    try:
        schemaless_writer(buf, schema.meta_parsed, meta)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise HubError(f"record does not fit schema {schema.full_name}: {exc}") from exc
    buf.write(body)
    return buf.getvalue()


def _write(schema: SchemaVersion, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    try:
        schemaless_writer(buf, schema.parsed, record)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise HubError(f"record does not fit schema {schema.full_name}: {exc}") from exc
    return buf.getvalue()


def _read(body: bytes, writer: Any, reader: SchemaVersion) -> dict[str, Any]:
    buf = io.BytesIO(body)
    try:
        record = schemaless_reader(buf, writer, reader.parsed)
    except Exception as exc:
        raise CorruptRecordError(f"payload does not decode as {reader.full_name}: {type(exc).__name__}") from exc
    if buf.tell() != len(body):
        raise CorruptRecordError(f"{len(body) - buf.tell()} trailing bytes after a {reader.full_name} record")
    if not isinstance(record, dict):
        raise CorruptRecordError(f"payload is not a {reader.full_name} record")
    return record


class SingleObjectSerde:
    content_type = AVRO_CONTENT_TYPE

    def __init__(self, catalogue: SchemaCatalogue) -> None:
        self.catalogue = catalogue

    def encode(self, record_type: str, record: dict[str, Any]) -> bytes:
        schema = self.catalogue.writer(record_type)
        return SINGLE_OBJECT_MAGIC + schema.fingerprint + _write(schema, record)

    def encode_body(self, record_type: str, meta: dict[str, Any], body: bytes) -> bytes:
        schema = self.catalogue.writer(record_type)
        return SINGLE_OBJECT_MAGIC + schema.fingerprint + _with_body(schema, meta, body)

    def decode(self, data: bytes) -> Decoded:
        if len(data) < 10 or data[:2] != SINGLE_OBJECT_MAGIC:
            raise CorruptRecordError("not an Avro single-object encoded record (missing C3 01 header)")
        writer = self.catalogue.by_fingerprint(data[2:10])
        if writer is None:
            raise UnknownFingerprintError(f"unknown writer schema fingerprint {data[2:10].hex()}")
        reader = self.catalogue.writer(writer.record_type)
        return Decoded(writer.record_type, _read(data[10:], writer.parsed, reader), writer.version)


class Registry(Protocol):
    """What the Confluent serde asks of a registry (:class:`hub.wire.registry.RegistryClient`)."""

    def register(self, subject: str, schema: dict[str, Any]) -> int: ...

    def lookup(self, subject: str, schema: dict[str, Any]) -> int | None: ...

    def schema(self, schema_id: int) -> dict[str, Any]: ...


class ConfluentSerde:
    content_type = AVRO_CONTENT_TYPE

    def __init__(self, catalogue: SchemaCatalogue, registry: Registry) -> None:
        self.catalogue = catalogue
        self.registry = registry
        self._ids: dict[str, int] = {}
        self._writers: dict[int, tuple[str, Any]] = {}
        self._lock = threading.Lock()

    def encode(self, record_type: str, record: dict[str, Any]) -> bytes:
        schema = self.catalogue.writer(record_type)
        with self._lock:
            schema_id = self._ids.get(record_type)
            if schema_id is None:
                schema_id = self._ids[record_type] = self.registry.register(schema.full_name, schema.schema)
        return CONFLUENT_MAGIC + struct.pack(">I", schema_id) + _write(schema, record)

    def encode_body(self, record_type: str, meta: dict[str, Any], body: bytes) -> bytes:
        schema = self.catalogue.writer(record_type)
        with self._lock:
            schema_id = self._ids.get(record_type)
            if schema_id is None:
                schema_id = self._ids[record_type] = self.registry.register(schema.full_name, schema.schema)
        return CONFLUENT_MAGIC + struct.pack(">I", schema_id) + _with_body(schema, meta, body)

    def warm(self) -> None:
        """Register every current schema and learn the ids of the released ones, so encoding and decoding
        read caches and never wait on the registry (call it off the event loop, at start)."""
        for record_type, schema in self.catalogue.current.items():
            schema_id = self.registry.register(schema.full_name, schema.schema)
            with self._lock:
                self._ids[record_type] = schema_id
                self._writers.setdefault(schema_id, (record_type, schema.parsed))
            for old in self.catalogue.released.get(record_type, []):
                old_id = self.registry.lookup(old.full_name, old.schema)
                if old_id is not None:
                    with self._lock:
                        self._writers.setdefault(old_id, (record_type, old.parsed))

    def decode(self, data: bytes) -> Decoded:
        if len(data) < 5 or data[:1] != CONFLUENT_MAGIC:
            raise CorruptRecordError("not a Confluent wire-format record (missing 00 magic byte)")
        (schema_id,) = struct.unpack(">I", data[1:5])
        with self._lock:
            cached = self._writers.get(schema_id)
        if cached is None:
            raw = self.registry.schema(schema_id)
            short = str(raw.get("name", "")).rsplit(".", 1)[-1]
            cached = (short, parse_schema(raw))
            with self._lock:
                self._writers[schema_id] = cached
        short, writer = cached
        try:
            reader = self.catalogue.writer(short)
        except HubError:
            raise UnknownFingerprintError(f"schema id {schema_id} names a record type this hub does not know") from None
        return Decoded(short, _read(data[5:], writer, reader), -1)


def make_serde(catalogue: SchemaCatalogue, registry: RegistryConfig | None = None) -> Serde:
    """Single-object encoding, or the Confluent wire format with a registry when one is configured."""
    if registry is not None:
        return ConfluentSerde(catalogue, RegistryClient(registry))
    return SingleObjectSerde(catalogue)


def warm(serde: object) -> None:
    """Fill a serde's registry caches (a no-op for serdes without a registry); blocking: run in a thread."""
    inner = getattr(serde, "inner", serde)
    if isinstance(inner, ConfluentSerde):
        inner.warm()
