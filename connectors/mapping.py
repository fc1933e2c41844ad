"""The declarative mapping engine shared by every sector.

A mapping file (JSON, one per source system, ``connectors/mappings/<sector>/<source>.json``) says,
for each kind of incoming record, which hub record type to emit and how to compute each field.
See ``connectors/mappings/README.md`` for the format. :meth:`Mapping.apply` turns one parsed record
(a CSV row, a JSON event or a FHIR resource with its resolved ``$`` context) into an
:class:`~hub.events.InboundEvent`, or raises :class:`~hub.errors.ValidationError` naming every bad field.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import cache, cached_property
from pathlib import Path
from typing import Any

from connectors.identifiers import IdentifierError, subject_ref
from connectors.paths import compile_path, compile_resolver, render
from connectors.schemas import FieldInfo, body_fields, invalid_body_fields, record_type_exists
from connectors.values import COMPUTATIONS, CONVERTERS, DEFAULT_FOR_KIND, to_string, zone
from hub.core.errors import ConfigError, Problem, ValidationError
from hub.core.events import InboundEvent, SubjectRef
from hub.core.privacy import scrub

MAPPINGS_DIR = Path(__file__).resolve().parent / "mappings"
SECTORS = ("health", "social_care", "education")
CATEGORIES = (
    "general",
    "clinical",
    "social_care",
    "education",
    "mental_health",
    "child_protection",
    "sexual_health",
    "domestic_abuse",
)
STATUSES = ("active", "entered_in_error")
ENVELOPE = ("source_id", "source_version", "occurred_at", "subject", "category", "status")

_ENVELOPE_INFO = {
    "source_id": FieldInfo("source_id", "string"),
    "source_version": FieldInfo("source_version", "int", has_default=True),
    "occurred_at": FieldInfo("occurred_at", "timestamp"),
    "category": FieldInfo("category", "enum", has_default=True, symbols=CATEGORIES),
    "status": FieldInfo("status", "enum", has_default=True, symbols=STATUSES),
}
_ENVELOPE_DEFAULTS: dict[str, Any] = {"source_version": 1, "category": "general", "status": "active"}


@dataclass(frozen=True)
class Rule:
    """Which record type one kind of input becomes, and how to compute its fields."""

    kind: str
    record_type: str
    when: dict[str, Any]
    envelope: dict[str, Any]
    body: dict[str, Any]
    checks: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Limits:
    """Plausibility limits for dates: nothing before ``min_year``; nothing too far in the future."""

    min_year: int = 1900
    max_future_days: int = 730
    occurred_at_max_future_days: int = 2


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
    limits: Limits = Limits()
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
        return _Run(self, record, style, root, now or datetime.now(UTC)).event()

    @cached_property
    def _compiled(self) -> _Compiled:
        return _Compiled(self)


# --- compiling a mapping ------------------------------------------------------------------------
#
# A rule's field specs are expanded (``ref``/shorthand), their paths parsed, converters and lookup
# tables chosen once per mapping (:meth:`Mapping._compiled`), not once per field per record. The
# compiled form computes exactly what the specs say; only where the work happens changes.

_MISSING = object()


class _Field:
    """One field spec of a rule, expanded once: paths compiled, converter and code table chosen."""

    __slots__ = (
        "const",
        "converter",
        "default",
        "env_default",
        "first_path",
        "folded",
        "format",
        "getters",
        "has_const",
        "has_default",
        "has_map",
        "info",
        "is_enum",
        "is_record",
        "label",
        "missing",
        "name",
        "no_subs",
        "paths",
        "plain_string",
        "probe",
        "required",
        "spec",
        "strict",
        "subs",
        "suffix",
        "symbols",
        "table",
        "type_name",
    )

    def __init__(self, name: str, prefix: str, raw: Any, info: FieldInfo, defs: dict[str, Any], sector: str) -> None:
        spec = _expand(raw, defs)
        self.name, self.label, self.spec, self.info = name, f"{prefix}{name}", spec, info
        self.paths = tuple(_paths(spec))
        self.getters = tuple((p, compile_resolver(p)) for p in self.paths)
        self.first_path = self.paths[0] if self.paths else None
        self.has_const, self.const = "const" in spec, spec.get("const")
        self.has_map = "map" in spec
        self.table = spec["map"] if self.has_map else {}
        self.folded = {str(k).casefold(): v for k, v in self.table.items()} if self.has_map else {}
        self.strict = spec.get("strict")
        self.has_default, self.default = "default" in spec, spec.get("default")
        self.suffix = spec.get("suffix")
        self.required = spec.get("required", info.required)
        self.missing = spec.get("missing")
        self.type_name = spec.get("type") or DEFAULT_FOR_KIND.get(info.kind, "raw")
        self.converter = CONVERTERS.get(self.type_name)
        self.plain_string = self.type_name == "string" and self.converter is to_string
        self.format = spec.get("format")
        self.env_default = _ENVELOPE_DEFAULTS.get(name, _MISSING) if not prefix else _MISSING
        self.is_enum, self.symbols = info.kind == "enum", info.symbols
        self.is_record = info.kind == "record"
        self.subs: list[tuple[str, _Field | None, FieldInfo]] = []
        self.no_subs = False
        self.probe: tuple[bool, tuple[Callable[[Any], Any], ...]] | None = None
        if self.is_record:
            sub_specs: dict[str, Any] = dict(spec.get("fields", {}))
            if "sector" in info.fields and "sector" not in sub_specs:
                sub_specs["sector"] = {"const": sector}
            self.no_subs = not sub_specs
            if sub_specs and (info.nullable or not self.required):
                key = spec.get("when_present") or next(iter(sub_specs))
                probe = _expand(sub_specs[key], defs)
                self.probe = ("const" in probe, tuple(compile_resolver(p) for p in _paths(probe)))
            for sub_name, sub_info in info.fields.items():
                sub = (
                    _Field(sub_name, f"{self.label}.", sub_specs[sub_name], sub_info, defs, sector)
                    if sub_name in sub_specs
                    else None
                )
                self.subs.append((sub_name, sub, sub_info))


class _Subject:
    """A rule's subject alternatives: (identifier system, paths) in order."""

    def __init__(self, specs: Any) -> None:
        alternatives = specs if isinstance(specs, list) else [specs] if specs else []
        self.alternatives = [(alt, [(p, compile_resolver(p)) for p in _paths(alt)]) for alt in alternatives]
        self.expected = " or ".join(f"{a['system']} at {p}" for a in alternatives for p in _paths(a))
        self.first = _paths(alternatives[0])[0] if alternatives and _paths(alternatives[0]) else None


class _CompiledRule:
    def __init__(self, mapping: Mapping, rule: Rule) -> None:
        defs, sector = mapping.defs, mapping.sector
        self.rule = rule
        self.when = [(compile_resolver(p), cond) for p, cond in rule.when.items()]
        if not rule.record_type:
            return
        self.envelope = [
            (name, _Field(name, "", rule.envelope.get(name, {}), info, defs, sector))
            for name, info in _ENVELOPE_INFO.items()
        ]
        self.subject = _Subject(rule.envelope.get("subject"))
        fields = body_fields(rule.record_type)
        self.plain: list[tuple[str, _Field]] = []
        self.computed: list[tuple[str, Callable[..., Any], list[str]]] = []
        for name, spec in rule.body.items():
            expanded = _expand(spec, defs)
            if "compute" in expanded:
                compute = expanded["compute"]
                self.computed.append((name, COMPUTATIONS[compute["fn"]], list(compute.get("args", []))))
            else:
                self.plain.append((name, _Field(name, "", spec, fields[name], defs, sector)))
        self.occurred_limits = _date_limits(
            rule.envelope.get("occurred_at"), mapping.limits.occurred_at_max_future_days, defs
        )
        self.date_limits = {
            name: _date_limits(spec, mapping.limits.max_future_days, defs) for name, spec in rule.body.items()
        }
        self.checks = [
            (check, next(iter(_paths(_expand(rule.body[check["field"]], defs))), None)) for check in rule.checks
        ]


def _date_limits(spec: Any, max_future_days: int, defs: dict[str, Any]) -> tuple[str | None, int]:
    spec = _expand(spec or {}, defs)
    return next(iter(_paths(spec)), None), spec.get("max_future_days", max_future_days)


class _Compiled:
    """A mapping's rules compiled for running, with the rules of each kind in order."""

    def __init__(self, mapping: Mapping) -> None:
        self.tz: tzinfo | None = zone(mapping.timezone)
        self.kind = compile_resolver(mapping.kind_path)
        self.by_kind: dict[str, list[_CompiledRule]] = {}
        for rule in mapping.rules:
            self.by_kind.setdefault(rule.kind, []).append(_CompiledRule(mapping, rule))


# --- running a mapping --------------------------------------------------------------------------


class _Run:
    def __init__(self, mapping: Mapping, record: dict[str, Any], style: str, root: str, now: datetime):
        self.mapping, self.record, self.style, self.root, self.now = mapping, record, style, root, now
        self.problems: list[Problem] = []
        self.compiled = mapping._compiled
        self.tz = self.compiled.tz

    def where(self, path: str | None) -> str:
        if not path:
            return self.root
        return render(path, self.style, self.root)

    def problem(self, path: str | None, message: str) -> None:
        self.problems.append(Problem(self.where(path), scrub(message)))

    def fail(self) -> ValidationError:
        return ValidationError(self.problems, title=f"Refused by mapping {self.mapping.ref}")

    # kind and rule ------------------------------------------------------------------------------

    def rule(self) -> _CompiledRule | None:
        m = self.mapping
        kind = self.compiled.kind(self.record)
        if kind in (None, "", []) or isinstance(kind, dict | list):
            self.problem(m.kind_path, f"{m.kind_label} is missing")
            raise self.fail()
        kind = str(kind)
        if kind in m.ignore:
            return None
        candidates = self.compiled.by_kind.get(kind, [])
        for compiled in candidates:
            if all(_matches(get(self.record), cond) for get, cond in compiled.when):
                return compiled
        if candidates:
            keys = sorted({p for c in candidates for p in c.rule.when if not p.startswith("$")})
            self.problem(
                keys[0] if keys else m.kind_path,
                f"{m.kind_label} '{kind}' with these values of {', '.join(keys) or 'its fields'} "
                f"is not mapped by mapping {m.ref}",
            )
        else:
            self.problem(m.kind_path, f"{m.kind_label} '{kind}' is not mapped by mapping {m.ref}")
        raise self.fail()

    def event(self) -> InboundEvent | None:
        compiled = self.rule()
        if compiled is None:
            return None
        rule = compiled.rule
        if not rule.record_type:
            return None
        value = self.value
        env = {name: value(f) for name, f in compiled.envelope}
        subject = self.subject(compiled.subject)
        body: dict[str, Any] = {name: value(f) for name, f in compiled.plain}
        for name, fn, args in compiled.computed:
            body[name] = fn(*[body.get(a) for a in args])
        limits = self.mapping.limits
        occurred = env.get("occurred_at")
        if isinstance(occurred, date):
            self.check_dates(occurred, "occurred_at", compiled.occurred_limits, limits.min_year)
        date_limits = compiled.date_limits
        for name, v in body.items():
            if isinstance(v, date):
                self.check_dates(v, name, date_limits[name], limits.min_year)
        for check, used in compiled.checks:
            self.run_check(check, body, used)
        if self.problems:
            raise self.fail()
        for bad in invalid_body_fields(rule.record_type, body):
            self.problem(None, f"body field '{bad}' does not match the {rule.record_type} schema")
        if self.problems or subject is None:
            raise self.fail()
        return InboundEvent(
            record_type=rule.record_type,
            sector=self.mapping.sector,  # type: ignore[arg-type]
            source_system=self.mapping.source_system,
            source_id=env["source_id"],
            occurred_at=env["occurred_at"],
            subject=subject,
            body=body,
            source_version=env["source_version"],
            category=env["category"],
            status=env["status"],
            mapping=self.mapping.ref,
        )

    # field values -------------------------------------------------------------------------------

    def value(self, f: _Field) -> Any:
        if f.is_record:
            return self.record_value(f)
        raw, used = None, f.first_path
        if f.has_const:
            raw = f.const
        has_map = f.has_map
        gathered: list[Any] = []
        record = self.record
        for path, get in f.getters:
            found = get(record)
            if found not in (None, "", []):
                if raw is None:
                    raw, used = found, path
                if not has_map:
                    break
                gathered.extend(found if isinstance(found, list) else [found])
        if has_map and gathered:
            raw = gathered  # a map looks at every path's values, first known value wins
        value: Any = None
        failed = False
        if raw not in (None, "", []):
            if has_map:
                mapped = _lookup_folded(f.table, f.folded, raw, None)
                if mapped is None and f.strict:
                    self.problem(
                        used,
                        f"{f.label} has a code the mapping does not know "
                        f"(expected one of {', '.join(map(str, f.table))})",
                    )
                    failed = True
                raw = mapped if mapped is not None else f.default
            if raw is not None:
                # a text field from text needs only to_string's strip; everything else is converted
                value = raw.strip() if f.plain_string and type(raw) is str else self.convert(f, used, raw)
                failed = value is None
                if isinstance(value, str) and f.suffix:
                    value += f.suffix
        if value is None and f.default is not None and not failed:
            value = f.default
        if value is None and not f.has_default and f.env_default is not _MISSING:
            value = f.env_default
        if value is None and not failed and f.required:
            where = " or ".join(f.paths) if f.paths else "the mapping"
            self.problem(used, f.missing or f"{f.label} is required but {where} has no value")
        if value is not None and f.is_enum and value not in f.symbols:
            self.problem(used, f"{f.label} must be one of {', '.join(f.symbols)}")
            return None
        return value

    def convert(self, f: _Field, used: str | None, raw: Any) -> Any:
        converter = f.converter or CONVERTERS[f.type_name]
        try:
            return converter(raw, format=f.format, tz=self.tz)
        except ValueError as exc:
            self.problem(used, f"{f.label}: {exc}")
            return None

    def record_value(self, f: _Field) -> dict[str, Any] | None:
        if f.no_subs:
            if f.required:
                self.problem(None, f"{f.label} is required but the mapping gives no fields")
            return None
        if f.probe is not None:
            has_const, getters = f.probe
            if not has_const and all(get(self.record) in (None, "", []) for get in getters):
                return None
        out = {}
        for sub_name, sub, sub_info in f.subs:
            if sub is not None:
                out[sub_name] = self.value(sub)
            elif sub_info.required:
                self.problem(None, f"{f.label}.{sub_name} is required but the mapping gives no value")
            else:
                out[sub_name] = None
        return out

    def subject(self, compiled: _Subject) -> SubjectRef | None:
        for alt, paths in compiled.alternatives:
            for path, get in paths:
                raw = get(self.record)
                if raw in (None, "", []):
                    continue
                try:
                    return subject_ref(alt["system"], raw[0] if isinstance(raw, list) else raw)
                except IdentifierError as exc:
                    self.problem(path, str(exc))
                    return None
        self.problem(compiled.first, f"subject identifier is missing (expected {compiled.expected or 'a subject'})")
        return None

    # checks -------------------------------------------------------------------------------------

    def check_dates(self, value: date, label: str, limits: tuple[str | None, int], min_year: int) -> None:
        used, limit_days = limits
        if value.year < min_year:
            self.problem(used, f"{label} is before {min_year}")
            return
        latest = self.now + timedelta(days=limit_days)
        too_late = value > latest if isinstance(value, datetime) else value > latest.date()
        if too_late:
            self.problem(used, f"{label} is more than {limit_days} days in the future")

    def run_check(self, check: dict[str, Any], body: dict[str, Any], used: str | None) -> None:
        name, other = check["field"], check["not_before"]
        a, b = body.get(name), body.get(other)
        if a is None or b is None:
            return
        if isinstance(a, datetime) != isinstance(b, datetime):
            a, b = (a.date() if isinstance(a, datetime) else a), (b.date() if isinstance(b, datetime) else b)
        if a < b:
            self.problem(used, f"{name} is before {other}")


def _paths(spec: Any) -> list[str]:
    if not isinstance(spec, dict) or "path" not in spec:
        return []
    path = spec["path"]
    return [path] if isinstance(path, str) else list(path)


def _expand(spec: Any, defs: dict[str, Any]) -> dict[str, Any]:
    if isinstance(spec, str):  # shorthand: "column_name"
        return {"path": spec}
    if not isinstance(spec, dict):
        return {"const": spec}
    if "ref" in spec:
        base = _expand(defs[spec["ref"]], defs)
        return {**base, **{k: v for k, v in spec.items() if k != "ref"}}
    return spec


def _lookup(table: dict[str, Any], raw: Any, default: Any) -> Any:
    return _lookup_folded(table, {str(k).casefold(): v for k, v in table.items()}, raw, default)


def _lookup_folded(table: dict[str, Any], folded: dict[str, Any], raw: Any, default: Any) -> Any:
    candidates = raw if isinstance(raw, list) else [raw]
    for candidate in candidates:
        key = str(candidate).strip()
        if key in table:
            return table[key]
        if key.casefold() in folded:
            return folded[key.casefold()]
    return default


def _matches(value: Any, cond: Any) -> bool:
    values = [str(v) for v in (value if isinstance(value, list) else [value]) if v is not None]
    if isinstance(cond, dict):
        if "exists" in cond:
            return bool(values) == bool(cond["exists"])
        if "not" in cond:
            excluded = {str(c) for c in (cond["not"] if isinstance(cond["not"], list) else [cond["not"]])}
            return not any(v in excluded for v in values)
        raise ConfigError(f"unknown condition {sorted(cond)}")
    allowed = {str(c).lower() if isinstance(c, bool) else str(c) for c in (cond if isinstance(cond, list) else [cond])}
    values = [v.lower() if v in ("True", "False") else v for v in values]
    return any(v in allowed for v in values)


# --- loading and checking mapping files ---------------------------------------------------------


def _config_error(where: str, message: str) -> ConfigError:
    return ConfigError(f"mapping {where}: {message}")


def _check_spec(where: str, name: str, spec: Any, info: FieldInfo | None, defs: dict[str, Any]) -> None:
    if isinstance(spec, dict) and "ref" in spec and spec["ref"] not in defs:
        raise _config_error(where, f"{name} refers to unknown def {spec['ref']!r}")
    spec = _expand(spec, defs)
    for path in _paths(spec):
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
