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
import json
import struct
import threading
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from hub.core.errors import CorruptRecordError, HubError, UnknownFingerprintError
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

    def decode(self, data: bytes) -> Decoded:
        if len(data) < 10 or data[:2] != SINGLE_OBJECT_MAGIC:
            raise CorruptRecordError("not an Avro single-object encoded record (missing C3 01 header)")
        writer = self.catalogue.by_fingerprint(data[2:10])
        if writer is None:
            raise UnknownFingerprintError(f"unknown writer schema fingerprint {data[2:10].hex()}")
        reader = self.catalogue.writer(writer.record_type)
        return Decoded(writer.record_type, _read(data[10:], writer.parsed, reader), writer.version)


class RegistryClient:
    """The part of the Confluent Schema Registry REST API the hub uses (httpx, injectable transport)."""

    def __init__(self, url: str, transport: httpx.BaseTransport | None = None, timeout: float = 10.0) -> None:
        self.http = httpx.Client(base_url=url.rstrip("/"), transport=transport, timeout=timeout,
                                 headers={"Accept": "application/vnd.schemaregistry.v1+json"})

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        r = self.http.post(f"/subjects/{subject}/versions", json={"schema": json.dumps(schema)},
                           headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
        r.raise_for_status()
        return int(r.json()["id"])

    def schema(self, schema_id: int) -> dict[str, Any]:
        r = self.http.get(f"/schemas/ids/{schema_id}")
        if r.status_code == 404:
            raise UnknownFingerprintError(f"schema id {schema_id} is not in the registry")
        r.raise_for_status()
        loaded: dict[str, Any] = json.loads(r.json()["schema"])
        return loaded


class ConfluentSerde:
    content_type = AVRO_CONTENT_TYPE

    def __init__(self, catalogue: SchemaCatalogue, registry: RegistryClient) -> None:
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


def make_serde(catalogue: SchemaCatalogue, registry_url: str = "") -> Serde:
    if registry_url:
        return ConfluentSerde(catalogue, RegistryClient(registry_url))
    return SingleObjectSerde(catalogue)
