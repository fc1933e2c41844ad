"""The declarative mapping engine shared by every sector.

A mapping file (JSON, one per source system, ``connectors/mappings/<sector>/<source>.json``) says,
for each kind of incoming record, which hub record type to emit and how to compute each field.
See ``connectors/mappings/README.md`` for the format. :meth:`Mapping.apply` turns one parsed record
(a CSV row, a JSON event or a FHIR resource with its resolved ``$`` context) into an
:class:`~hub.core.events.InboundEvent`, or raises :class:`~hub.core.errors.ValidationError` naming every
bad field.

This module holds the :class:`Mapping` type and loads and checks mapping files; the parts of a file
are in :mod:`connectors.mapping_spec`, compiling in :mod:`connectors.mapping_compile` and applying in
:mod:`connectors.mapping_run`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache, cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from connectors.mapping_compile import CompiledMapping
from connectors.mapping_run import MappingRun
from connectors.mapping_spec import ENVELOPE, SECTORS, Limits, Rule, expand_spec, spec_paths
from connectors.paths import compile_path
from connectors.schemas import FieldInfo, body_fields, record_type_exists
from connectors.values import COMPUTATIONS, CONVERTERS
from hub.core.errors import ConfigError
from hub.core.events import InboundEvent

__all__ = ["MAPPINGS_DIR", "SECTORS", "Limits", "Mapping", "Rule", "builtin_mapping", "builtin_mappings",
           "load_mapping", "mapping_from_dict"]

#: the built-in mapping files, shipped inside the ``connectors`` package
MAPPINGS_DIR = Path(str(resources.files("connectors").joinpath("mappings")))


@dataclass(frozen=True)
class Mapping:
    """A loaded, checked mapping file."""

    name: str
    version: int
    sector: str
    source_system: str
    kind_path: str
    kind_label: str
    rules: tuple[Rule, ...]
    ignore: frozenset[str] = frozenset()
    defs: dict[str, Any] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    timezone: str | None = None
    path: str | None = None

    @property
    def ref(self) -> str:
        """``name@version``, recorded on every event this mapping produces."""
        return f"{self.name}@{self.version}"

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(r.kind for r in self.rules)

    def apply(
        self, record: dict[str, Any], *, style: str = "pointer", root: str = "", now: datetime | None = None
    ) -> InboundEvent | None:
        """Map one record. Returns ``None`` for kinds the mapping lists under ``ignore``."""
        return MappingRun(self, record, style, root, now or datetime.now(UTC)).event()

    @cached_property
    def compiled(self) -> CompiledMapping:
        """The rules compiled for running (once per mapping)."""
        return CompiledMapping(self.rules, defs=self.defs, sector=self.sector, limits=self.limits,
                               timezone=self.timezone, kind_path=self.kind_path)


# --- loading and checking mapping files ---------------------------------------------------------


def _config_error(where: str, message: str) -> ConfigError:
    return ConfigError(f"mapping {where}: {message}")


def _check_spec(where: str, name: str, spec: Any, info: FieldInfo | None, defs: dict[str, Any]) -> None:
    if isinstance(spec, dict) and "ref" in spec and spec["ref"] not in defs:
        raise _config_error(where, f"{name} refers to unknown def {spec['ref']!r}")
    spec = expand_spec(spec, defs)
    for path in spec_paths(spec):
        try:
            compile_path(path)
        except ValueError as exc:
            raise _config_error(where, f"{name}: {exc}") from None
    if spec.get("type") and spec["type"] not in CONVERTERS:
        raise _config_error(where, f"{name} has unknown type {spec['type']!r}")
    if "compute" in spec and spec["compute"].get("fn") not in COMPUTATIONS:
        raise _config_error(where, f"{name} has unknown computation {spec['compute'].get('fn')!r}")
    if info is not None and info.kind == "record":
        for sub in spec.get("fields", {}):
            if sub not in info.fields:
                raise _config_error(where, f"{name}.{sub} is not a field of {name}")
            _check_spec(where, f"{name}.{sub}", spec["fields"][sub], info.fields[sub], defs)


def _build_rule(where: str, raw: dict[str, Any], data: dict[str, Any]) -> Rule:
    if raw.get("emit") is False:  # recognised on purpose, emits nothing
        return Rule(kind=str(raw["kind"]), record_type="", when=dict(raw.get("when", {})), envelope={}, body={})
    record_type = raw.get("record_type")
    if not record_type or not record_type_exists(record_type):
        raise _config_error(where, f"unknown record type {record_type!r}")
    defs = data.get("defs", {})
    fields = body_fields(record_type)
    body = dict(raw.get("body", {}))
    for name, spec in data.get("body_defaults", {}).items():
        if name in fields and name not in body:
            body[name] = spec
    for name, spec in body.items():
        if name not in fields:
            raise _config_error(where, f"{name!r} is not a field of {record_type}")
        _check_spec(where, name, spec, fields[name], defs)
    missing = [n for n, info in fields.items() if info.required and n not in body]
    if missing:
        raise _config_error(where, f"{record_type} needs {', '.join(missing)}")
    envelope = {**data.get("defaults", {}), **{k: raw[k] for k in ENVELOPE if k in raw}}
    for name in ("source_id", "occurred_at", "subject"):
        if name not in envelope:
            raise _config_error(where, f"no {name} given")
    for check in raw.get("checks", []):
        if check.get("field") not in body or check.get("not_before") not in body:
            raise _config_error(where, f"check {check} names a field the rule does not set")
    return Rule(
        kind=str(raw["kind"]),
        record_type=record_type,
        when=dict(raw.get("when", {})),
        envelope=envelope,
        body=body,
        checks=tuple(raw.get("checks", [])),
    )


def mapping_from_dict(data: dict[str, Any], *, path: str | None = None) -> Mapping:
    """Check a mapping document and build a :class:`Mapping`; raise ``ConfigError`` when it is wrong."""
    label = path or str(data.get("name", "<unnamed>"))
    for key in ("name", "version", "sector", "source_system", "kind", "rules"):
        if key not in data:
            raise _config_error(label, f"the {key!r} key is missing")
    if data["sector"] not in SECTORS:
        raise _config_error(label, f"sector must be one of {', '.join(SECTORS)}")
    rules = tuple(_build_rule(f"{label} rule {i} ({r.get('kind')})", r, data) for i, r in enumerate(data["rules"]))
    kind = data["kind"] if isinstance(data["kind"], dict) else {"path": data["kind"]}
    return Mapping(
        name=str(data["name"]),
        version=int(data["version"]),
        sector=data["sector"],
        source_system=str(data["source_system"]),
        kind_path=kind["path"],
        kind_label=str(kind.get("label", kind["path"])),
        rules=rules,
        ignore=frozenset(data.get("ignore", [])),
        defs=dict(data.get("defs", {})),
        limits=Limits(**data.get("limits", {})),
        timezone=data.get("timezone"),
        path=path,
    )


def load_mapping(path: str | Path) -> Mapping:
    """Load and check a mapping file (``.json``)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"mapping {path}: cannot be read ({exc})") from None
    return mapping_from_dict(data, path=str(path))


@cache
def builtin_mapping(sector: str, source: str) -> Mapping:
    """A mapping shipped in ``connectors/mappings/<sector>/<source>.json``."""
    return load_mapping(MAPPINGS_DIR / sector / f"{source}.json")


def builtin_mappings() -> list[Mapping]:
    """Every shipped mapping (each is checked as it loads)."""
    return [builtin_mapping(p.parent.name, p.stem) for p in sorted(MAPPINGS_DIR.glob("*/*.json"))]
