"""What the hub's Avro schemas say about a record type's body: field kinds, enums, required fields.

The mapping engine uses this to know which body fields are required, which enum symbols are
allowed, and to validate every body it produces before handing it to the hub.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

import fastavro.schema
import fastavro.validation
import fastavro.write
from fastavro.validation import ValidationError as AvroValidationError

from hub.core import records
from hub.core.errors import UnknownRecordTypeError
from hub.core.records import EVENT_NAMESPACE

_PRIMITIVE_KINDS = {"string", "int", "long", "boolean", "double", "float", "bytes"}


@dataclass(frozen=True)
class FieldInfo:
    """One field of a record: its kind (string, int, long, boolean, date, timestamp, enum, record)."""

    name: str
    kind: str
    nullable: bool = False
    has_default: bool = False
    symbols: tuple[str, ...] = ()
    fields: dict[str, FieldInfo] = field(default_factory=dict)

    @property
    def required(self) -> bool:
        return not self.nullable and not self.has_default


def _kind_of(avro_type: Any, named: dict[str, Any]) -> tuple[str, tuple[str, ...], dict[str, FieldInfo]]:
    if isinstance(avro_type, str):
        if avro_type in _PRIMITIVE_KINDS:
            return avro_type, (), {}
        avro_type = named[avro_type]
    if isinstance(avro_type, dict):
        name = avro_type.get("name")
        if name and avro_type.get("type") in ("record", "enum"):
            named[name] = avro_type
        logical = avro_type.get("logicalType")
        if logical == "date":
            return "date", (), {}
        if logical in ("timestamp-millis", "timestamp-micros"):
            return "timestamp", (), {}
        if avro_type.get("type") == "enum":
            return "enum", tuple(avro_type["symbols"]), {}
        if avro_type.get("type") == "record":
            return "record", (), _fields_of(avro_type, named)
        return _kind_of(avro_type["type"], named)
    raise UnknownRecordTypeError(f"unsupported Avro type {avro_type!r}")


def _fields_of(record: dict[str, Any], named: dict[str, Any]) -> dict[str, FieldInfo]:
    out: dict[str, FieldInfo] = {}
    for f in record["fields"]:
        avro_type = f["type"]
        nullable = isinstance(avro_type, list) and "null" in avro_type
        if isinstance(avro_type, list):
            avro_type = next(t for t in avro_type if t != "null")
        kind, symbols, sub = _kind_of(avro_type, named)
        has_default = "default" in f  # an enum's own default is for schema resolution, not a field default
        out[f["name"]] = FieldInfo(f["name"], kind, nullable, has_default, symbols, sub)
    return out


@cache
def load_event_schema(record_type: str) -> Any:
    """The parsed Avro schema of ``uk.familyhub.event.<record_type>`` (found through :mod:`hub.core.records`)."""
    return fastavro.schema.load_schema(str(records.get(record_type).path))


@cache
def body_fields(record_type: str) -> dict[str, FieldInfo]:
    """The record type's fields other than ``meta``."""
    schema = load_event_schema(record_type)
    fields = _fields_of(schema, {})
    fields.pop("meta", None)
    return fields


def record_type_exists(record_type: str) -> bool:
    return record_type in records.catalogue()


def _dummy_meta() -> dict[str, Any]:
    now = datetime(2000, 1, 1, tzinfo=UTC)
    return {
        "event_id": "00000000-0000-0000-0000-000000000000",
        "source_system": "x",
        "source_id": "x",
        "source_version": 1,
        "occurred_at": now,
        "received_at": now,
        "subject": "x",
        "category": "general",
        "status": "active",
        "mapping": None,
    }


@cache
def _dummy_meta_bytes(record_type: str) -> bytes:
    """The Avro bytes of :func:`_dummy_meta` as the record type's ``meta`` field (its first field)."""
    schema = load_event_schema(record_type)
    first = schema["fields"][0]
    if first["name"] != "meta":
        raise UnknownRecordTypeError(f"{record_type}: meta is not the first field")
    buf = io.BytesIO()
    fastavro.write.schemaless_writer(buf, fastavro.schema.parse_schema(first["type"]), _dummy_meta())
    return buf.getvalue()


def checked_body(record_type: str, body: dict[str, Any]) -> tuple[bytes | None, list[str]]:
    """(the body's Avro bytes, names of body fields that do not validate against the schema).

    A valid body is encoded once, here, and its bytes (every field after ``meta``, which an Avro record
    writes in field order) are handed on with the event, so the hub writes ``meta`` and reuses them
    instead of encoding the body again (:meth:`hub.core.events.InboundEvent.encoded_body`). A body that
    does not validate has no bytes and the names of its bad fields: taken from fastavro's messages,
    whose text (which quotes values) is never passed on.
    """
    record = {"meta": _dummy_meta(), **body}
    # Fast path: a body fastavro's (compiled) writer accepts is valid; only a refused one is walked
    # with the slower validator, which names the fields (it builds a JSON error for every union branch).
    buf = io.BytesIO()
    try:
        fastavro.write.schemaless_writer(buf, load_event_schema(record_type), record)
    except Exception:  # any refusal falls through to the detailed check
        return None, _invalid_fields(record_type, record)
    encoded = buf.getvalue()
    prefix = _dummy_meta_bytes(record_type)
    if not encoded.startswith(prefix):  # cannot happen for a record whose first field is meta; encode again then
        return None, []
    return encoded[len(prefix):], []


def invalid_body_fields(record_type: str, body: dict[str, Any]) -> list[str]:
    """Names of body fields that do not validate against the schema (empty when the body is valid).

    The names are taken from fastavro's messages; the messages themselves (which quote values) are
    never passed on.
    """
    return checked_body(record_type, body)[1]


def _invalid_fields(record_type: str, record: dict[str, Any]) -> list[str]:
    try:
        fastavro.validation.validate(record, load_event_schema(record_type), raise_errors=True)
    except AvroValidationError as exc:
        prefix = f"{EVENT_NAMESPACE}.{record_type}."
        names = []
        for message in exc.errors:
            where = str(message).split(" ", 1)[0]
            names.append(where.removeprefix(prefix) or record_type)
        return names or [record_type]
    return []
