"""The schema catalogue: every record type's current Avro schema and every released version.

Layout of the schema directory::

    schemas/uk.familyhub.<Type>.avsc              shared named types (Meta, Service, enums …)
    schemas/uk.familyhub.event.<Record>.avsc      current schema of each record type
    schemas/released/<full name>/v<N>.avsc        every released version, fully expanded

Writers always use the current schema; readers know every released version by its CRC-64-AVRO
fingerprint, so a record written by any released version decodes and resolves to the current one.
Every schema must be FULL_TRANSITIVE compatible with all its released versions
(:meth:`SchemaCatalogue.check`); :meth:`SchemaCatalogue.release` snapshots a new version only when
it is.

Each current schema also carries the hub's facts about its record type as ``hub.*`` attributes
(:mod:`hub.core.records`); they are outside the canonical form, but a released copy is compared
with the current schema as a whole, so it carries them too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from fastavro import parse_schema
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form

from hub.core.errors import ConfigError, IncompatibleSchemaError, UnknownRecordTypeError
from hub.core.records import EVENT_NAMESPACE, ce_type_of, event_schema_files, record_type_of
from hub.core.records import get as records_get


@dataclass(frozen=True)
class SchemaVersion:
    record_type: str  # short name, e.g. "ReportIssued"
    full_name: str
    version: int  # 0 = current, not yet released
    schema: dict[str, Any]  # expanded JSON

    @cached_property
    def parsed(self) -> Any:
        return parse_schema(self.schema)

    @cached_property
    def meta_parsed(self) -> Any:
        """The parsed schema of the record's first field, ``meta`` (None if the first field is another):
        an Avro record is its fields' encodings in order, so ``meta`` can be written apart from the body."""
        first = self.schema["fields"][0]
        return parse_schema(first["type"]) if first["name"] == "meta" else None

    @cached_property
    def fingerprint(self) -> bytes:
        return bytes.fromhex(fingerprint(to_parsing_canonical_form(self.schema), "CRC-64-AVRO"))

    @property
    def ce_type(self) -> str:
        return ce_type_of(self.schema, self.record_type)


def _strip(schema: Any) -> Any:
    """The expanded JSON form of a schema as written to the released/ folder."""
    return json.loads(json.dumps(schema))


def compatibility_problems(reader: dict[str, Any], writer: dict[str, Any]) -> list[str]:
    """Why data written with ``writer`` cannot be read with ``reader`` (empty if it can)."""
    result = ReaderWriterCompatibilityChecker().get_compatibility(
        avro.schema.parse(json.dumps(reader)), avro.schema.parse(json.dumps(writer))
    )
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    return [f"{_named(reader, loc)}: {msg}" for msg, loc in zip(result.messages, result.locations, strict=False)] or [
        str(result.incompatibilities)
    ]


def _named(schema: Any, location: str) -> str:
    """Turn the checker's '/fields/7/type' into 'page_count (field 7)/type' using the reader schema."""
    parts = location.strip("/").split("/")
    out: list[str] = []
    node = schema
    i = 0
    while i < len(parts):
        if parts[i] == "fields" and i + 1 < len(parts) and parts[i + 1].isdigit() and isinstance(node, dict):
            idx = int(parts[i + 1])
            fields = node.get("fields", [])
            name = fields[idx]["name"] if idx < len(fields) else parts[i + 1]
            out.append(name)
            node = fields[idx]["type"] if idx < len(fields) else None
            i += 2
        else:
            out.append(parts[i])
            i += 1
    return "/" + "/".join(out)


class SchemaCatalogue:
    """Current and released schemas of every record type, indexed by name and fingerprint."""

    def __init__(self, schema_dir: Path) -> None:
        if not schema_dir.is_dir():
            raise ConfigError(f"schema directory {schema_dir} does not exist (set HUB_SCHEMA_DIR)")
        self.dir = schema_dir
        self.current: dict[str, SchemaVersion] = {}
        self.released: dict[str, list[SchemaVersion]] = {}
        for path in event_schema_files(schema_dir):
            full = path.name.removesuffix(".avsc")
            short = record_type_of(path)
            try:
                schema = _strip(load_schema(str(path), _write_hint=False))
            except Exception as exc:
                raise ConfigError(f"schema file {path.name} cannot be loaded: {exc}") from exc
            self.current[short] = SchemaVersion(short, full, 0, schema)
            versions = []
            for vpath in sorted((schema_dir / "released" / full).glob("v*.avsc"), key=lambda p: int(p.stem[1:])):
                versions.append(SchemaVersion(short, full, int(vpath.stem[1:]), json.loads(vpath.read_text())))
            self.released[short] = versions
        if not self.current:
            raise ConfigError(f"schema directory {schema_dir} holds no {EVENT_NAMESPACE}.*.avsc files")
        self._by_fingerprint: dict[bytes, SchemaVersion] = {}
        for short, cur in self.current.items():
            for v in [*self.released[short], cur]:
                self._by_fingerprint.setdefault(v.fingerprint, v)
        self._by_ce_type = {v.ce_type: v for v in self.current.values()}
        self._shipped: dict[str, bool] = {}

    def dataschema(self, record_type: str) -> str:
        """The CloudEvents ``dataschema`` of records written now: a URI naming the writer schema by its full
        name and released version (the file ``released/<full name>/v<N>.avsc``; ``v0`` before a release)."""
        cur = self.writer(record_type)
        same = self._by_fingerprint.get(cur.fingerprint)
        return f"urn:familyhub:schema:{cur.full_name}:v{same.version if same is not None else 0}"

    def shipped(self, record_type: str) -> bool:
        """Whether the current schema of ``record_type`` is the one the hub ships (``hub.core.records``), which
        connectors check and encode bodies with; compared once per record type."""
        same = self._shipped.get(record_type)
        if same is None:
            try:
                path = records_get(record_type).path
                same = self.writer(record_type).schema == _strip(load_schema(str(path), _write_hint=False))
            except Exception:  # an unknown or unreadable shipped schema: encode here, never reuse
                same = False
            self._shipped[record_type] = same
        return same

    def writer(self, record_type: str) -> SchemaVersion:
        try:
            return self.current[record_type]
        except KeyError:
            raise UnknownRecordTypeError(f"no schema for record type {record_type!r}") from None

    def by_ce_type(self, ce_type: str) -> SchemaVersion:
        try:
            return self._by_ce_type[ce_type]
        except KeyError:
            raise UnknownRecordTypeError(f"no schema for event type {ce_type!r}") from None

    def by_fingerprint(self, fp: bytes) -> SchemaVersion | None:
        return self._by_fingerprint.get(fp)

    def check(self, record_type: str, candidate: dict[str, Any] | None = None) -> list[str]:
        """FULL_TRANSITIVE: the candidate (default: current) reads and is read by every released version."""
        new = candidate if candidate is not None else self.writer(record_type).schema
        problems: list[str] = []
        for old in self.released.get(record_type, []):
            for direction, reader, writer in (("backward", new, old.schema), ("forward", old.schema, new)):
                problems += [f"v{old.version} {direction}: {p}" for p in compatibility_problems(reader, writer)]
        return problems

    def unreleased(self) -> list[str]:
        """Record types whose current schema differs from their latest released version."""
        out = []
        for short, cur in self.current.items():
            rel = self.released[short]
            if not rel or rel[-1].fingerprint != cur.fingerprint or rel[-1].schema != cur.schema:
                out.append(short)
        return out

    def release(self) -> list[tuple[str, int]]:
        """Snapshot every changed schema as a new released version, after checking compatibility."""
        done = []
        for short in self.unreleased():
            problems = self.check(short)
            if problems:
                raise IncompatibleSchemaError(f"{short} is not FULL_TRANSITIVE compatible: " + "; ".join(problems))
            cur = self.current[short]
            version = (self.released[short][-1].version if self.released[short] else 0) + 1
            target = self.dir / "released" / cur.full_name / f"v{version}.avsc"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(cur.schema, indent=2) + "\n")
            done.append((short, version))
        return done
