"""The declarative mapping engine shared by every sector.

A mapping file (JSON, one per source system, ``connectors/mappings/<sector>/<source>.json``) says,
for each kind of incoming record, which hub record type to emit and how to compute each field.
See ``connectors/mappings/README.md`` for the format. :meth:`Mapping.apply` turns one parsed record
(a CSV row, a JSON event or a FHIR resource with its resolved ``$`` context) into an
:class:`~hub.events.InboundEvent`, or raises :class:`~hub.errors.ValidationError` naming every bad field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import cache
from pathlib import Path
from typing import Any

from connectors.identifiers import IdentifierError, scrub, subject_ref
from connectors.paths import compile_path, render, resolve
from connectors.schemas import FieldInfo, body_fields, invalid_body_fields, record_type_exists
from connectors.values import COMPUTATIONS, CONVERTERS, DEFAULT_FOR_KIND, zone
from hub.errors import ConfigError, Problem, ValidationError
from hub.events import InboundEvent, SubjectRef

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


# --- running a mapping --------------------------------------------------------------------------


class _Run:
    def __init__(self, mapping: Mapping, record: dict[str, Any], style: str, root: str, now: datetime):
        self.mapping, self.record, self.style, self.root, self.now = mapping, record, style, root, now
        self.problems: list[Problem] = []
        self.tz: tzinfo | None = zone(mapping.timezone)

    def where(self, path: str | None) -> str:
        if not path:
            return self.root
        return render(path, self.style, self.root)

    def problem(self, path: str | None, message: str) -> None:
        self.problems.append(Problem(self.where(path), scrub(message)))

    def fail(self) -> ValidationError:
        return ValidationError(self.problems, title=f"Refused by mapping {self.mapping.ref}")

    # kind and rule ------------------------------------------------------------------------------

    def rule(self) -> Rule | None:
        m = self.mapping
        kind = resolve(self.record, m.kind_path)
        if kind in (None, "", []) or isinstance(kind, dict | list):
            self.problem(m.kind_path, f"{m.kind_label} is missing")
            raise self.fail()
        kind = str(kind)
        if kind in m.ignore:
            return None
        candidates = [r for r in m.rules if r.kind == kind]
        for rule in candidates:
            if all(_matches(resolve(self.record, p), cond) for p, cond in rule.when.items()):
                return rule
        if candidates:
            keys = sorted({p for r in candidates for p in r.when if not p.startswith("$")})
            self.problem(
                keys[0] if keys else m.kind_path,
                f"{m.kind_label} '{kind}' with these values of {', '.join(keys) or 'its fields'} "
                f"is not mapped by mapping {m.ref}",
            )
        else:
            self.problem(m.kind_path, f"{m.kind_label} '{kind}' is not mapped by mapping {m.ref}")
        raise self.fail()

    def event(self) -> InboundEvent | None:
        rule = self.rule()
        if rule is None or not rule.record_type:
            return None
        env = {
            name: self.value(name, rule.envelope.get(name, {}), _ENVELOPE_INFO[name], "")
            for name in _ENVELOPE_INFO
        }
        subject = self.subject(rule.envelope.get("subject"))
        fields = body_fields(rule.record_type)
        body: dict[str, Any] = {}
        for name, spec in rule.body.items():
            if "compute" not in _expand(spec, self.mapping.defs):
                body[name] = self.value(name, spec, fields[name], "")
        for name, spec in rule.body.items():
            spec = _expand(spec, self.mapping.defs)
            if "compute" in spec:
                args = [body.get(a) for a in spec["compute"].get("args", [])]
                body[name] = COMPUTATIONS[spec["compute"]["fn"]](*args)
        self.check_dates(
            env.get("occurred_at"),
            "occurred_at",
            rule.envelope.get("occurred_at"),
            self.mapping.limits.occurred_at_max_future_days,
        )
        for name, value in body.items():
            self.check_dates(value, name, rule.body[name], self.mapping.limits.max_future_days)
        for check in rule.checks:
            self.run_check(check, body, rule)
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

    def value(self, name: str, spec: Any, info: FieldInfo, prefix: str) -> Any:
        spec = _expand(spec, self.mapping.defs)
        label = f"{prefix}{name}"
        if info.kind == "record":
            return self.record_value(label, spec, info)
        paths = _paths(spec)
        raw, used = None, (paths[0] if paths else None)
        if "const" in spec:
            raw = spec["const"]
        gathered: list[Any] = []
        for path in paths:
            found = resolve(self.record, path)
            if found not in (None, "", []):
                if raw is None:
                    raw, used = found, path
                if "map" not in spec:
                    break
                gathered.extend(found if isinstance(found, list) else [found])
        if "map" in spec and gathered:
            raw = gathered  # a map looks at every path's values, first known value wins
        value: Any = None
        failed = False
        if raw not in (None, "", []):
            if "map" in spec:
                mapped = _lookup(spec["map"], raw, None)
                if mapped is None and spec.get("strict"):
                    self.problem(
                        used,
                        f"{label} has a code the mapping does not know "
                        f"(expected one of {', '.join(map(str, spec['map']))})",
                    )
                    failed = True
                raw = mapped if mapped is not None else spec.get("default")
            if raw is not None:
                value = self.convert(label, used, spec, info, raw)
                failed = value is None
                if isinstance(value, str) and spec.get("suffix"):
                    value += spec["suffix"]
        if value is None and spec.get("default") is not None and not failed:
            value = spec["default"]
        if value is None and "default" not in spec and name in _ENVELOPE_DEFAULTS and not prefix:
            value = _ENVELOPE_DEFAULTS[name]
        if value is None and not failed and spec.get("required", info.required):
            where = " or ".join(paths) if paths else "the mapping"
            self.problem(used, spec.get("missing") or f"{label} is required but {where} has no value")
        if value is not None and info.kind == "enum" and value not in info.symbols:
            self.problem(used, f"{label} must be one of {', '.join(info.symbols)}")
            return None
        return value

    def convert(self, label: str, used: str | None, spec: dict[str, Any], info: FieldInfo, raw: Any) -> Any:
        kind = spec.get("type") or DEFAULT_FOR_KIND.get(info.kind, "raw")
        try:
            return CONVERTERS[kind](raw, format=spec.get("format"), tz=self.tz)
        except ValueError as exc:
            self.problem(used, f"{label}: {exc}")
            return None

    def record_value(self, label: str, spec: dict[str, Any], info: FieldInfo) -> dict[str, Any] | None:
        sub_specs: dict[str, Any] = dict(spec.get("fields", {}))
        if "sector" in info.fields and "sector" not in sub_specs:
            sub_specs["sector"] = {"const": self.mapping.sector}
        if not sub_specs:
            if spec.get("required", info.required):
                self.problem(None, f"{label} is required but the mapping gives no fields")
            return None
        if info.nullable or not spec.get("required", info.required):
            key = spec.get("when_present") or next(iter(sub_specs))
            probe = _expand(sub_specs[key], self.mapping.defs)
            if "const" not in probe and all(resolve(self.record, p) in (None, "", []) for p in _paths(probe)):
                return None
        out = {}
        for sub_name, sub_info in info.fields.items():
            if sub_name in sub_specs:
                out[sub_name] = self.value(sub_name, sub_specs[sub_name], sub_info, f"{label}.")
            elif sub_info.required:
                self.problem(None, f"{label}.{sub_name} is required but the mapping gives no value")
            else:
                out[sub_name] = None
        return out

    def subject(self, specs: Any) -> SubjectRef | None:
        alternatives = specs if isinstance(specs, list) else [specs] if specs else []
        for alt in alternatives:
            for path in _paths(alt):
                raw = resolve(self.record, path)
                if raw in (None, "", []):
                    continue
                try:
                    return subject_ref(alt["system"], raw[0] if isinstance(raw, list) else raw)
                except IdentifierError as exc:
                    self.problem(path, str(exc))
                    return None
        expected = " or ".join(f"{a['system']} at {p}" for a in alternatives for p in _paths(a))
        first = _paths(alternatives[0])[0] if alternatives and _paths(alternatives[0]) else None
        self.problem(first, f"subject identifier is missing (expected {expected or 'a subject'})")
        return None

    # checks -------------------------------------------------------------------------------------

    def check_dates(self, value: Any, label: str, spec: Any, max_future_days: int) -> None:
        if not isinstance(value, date):
            return
        spec = _expand(spec or {}, self.mapping.defs)
        used = next(iter(_paths(spec)), None)
        limit_days = spec.get("max_future_days", max_future_days)
        if value.year < self.mapping.limits.min_year:
            self.problem(used, f"{label} is before {self.mapping.limits.min_year}")
            return
        latest = self.now + timedelta(days=limit_days)
        too_late = value > latest if isinstance(value, datetime) else value > latest.date()
        if too_late:
            self.problem(used, f"{label} is more than {limit_days} days in the future")

    def run_check(self, check: dict[str, Any], body: dict[str, Any], rule: Rule) -> None:
        name, other = check["field"], check["not_before"]
        a, b = body.get(name), body.get(other)
        if a is None or b is None:
            return
        if isinstance(a, datetime) != isinstance(b, datetime):
            a, b = (a.date() if isinstance(a, datetime) else a), (b.date() if isinstance(b, datetime) else b)
        if a < b:
            used = next(iter(_paths(_expand(rule.body[name], self.mapping.defs))), None)
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
    candidates = raw if isinstance(raw, list) else [raw]
    folded = {str(k).casefold(): v for k, v in table.items()}
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
    allowed = {
        str(c).lower() if isinstance(c, bool) else str(c)
        for c in (cond if isinstance(cond, list) else [cond])
    }
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
        return Rule(
            kind=str(raw["kind"]), record_type="", when=dict(raw.get("when", {})), envelope={}, body={}
        )
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
    rules = tuple(
        _build_rule(f"{label} rule {i} ({r.get('kind')})", r, data) for i, r in enumerate(data["rules"])
    )
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
