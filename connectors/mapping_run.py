"""Applying a compiled mapping to one record: an :class:`~hub.core.events.InboundEvent`, or a
:class:`~hub.core.errors.ValidationError` naming every bad field."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from connectors.identifiers import IdentifierError, subject_ref
from connectors.mapping_compile import MISSING, CompiledField, CompiledMapping, CompiledRule, CompiledSubject
from connectors.mapping_spec import Limits
from connectors.paths import render
from connectors.schemas import checked_body
from connectors.values import CONVERTERS
from hub.core.errors import ConfigError, Problem, ValidationError
from hub.core.events import InboundEvent, SubjectRef
from hub.core.privacy import scrub

_SNAKE_CODE = re.compile(r"[a-z][a-z0-9_]{0,62}")


def shown_code(kind: object) -> str:
    """`` 'code'`` for an event type or FHIR resource type a sender may be told back, else nothing: a value
    that is not a code (a name, a date typed into the field) is never repeated in an answer."""
    text = str(kind)
    if _SNAKE_CODE.fullmatch(text) or is_fhir_type(text):
        return f" '{text}'"
    return ""


def is_fhir_type(name: str) -> bool:
    from fhir.resources import get_fhir_model_class

    try:
        return bool(re.fullmatch(r"[A-Z][A-Za-z]{1,62}", name)) and get_fhir_model_class(name) is not None
    except (KeyError, ValueError, AttributeError, ModuleNotFoundError):
        return False

class RunnableMapping(Protocol):
    """What applying needs of a :class:`connectors.mapping.Mapping`."""

    @property
    def ref(self) -> str: ...
    @property
    def sector(self) -> str: ...
    @property
    def source_system(self) -> str: ...
    @property
    def kind_path(self) -> str: ...
    @property
    def kind_label(self) -> str: ...
    @property
    def ignore(self) -> frozenset[str]: ...
    @property
    def limits(self) -> Limits: ...
    @property
    def compiled(self) -> CompiledMapping: ...


class MappingRun:
    """Maps one record; collects every problem before refusing it."""

    def __init__(self, mapping: RunnableMapping, record: dict[str, Any], style: str, root: str, now: datetime):
        self.mapping, self.record, self.style, self.root, self.now = mapping, record, style, root, now
        self.problems: list[Problem] = []
        self.compiled = mapping.compiled
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

    def rule(self) -> CompiledRule | None:
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
            if all(matches(get(self.record), cond) for get, cond in compiled.when):
                return compiled
        if candidates:
            keys = sorted({p for c in candidates for p in c.rule.when if not p.startswith("$")})
            self.problem(
                keys[0] if keys else m.kind_path,
                f"{m.kind_label}{shown_code(kind)} with these values of {', '.join(keys) or 'its fields'} "
                f"is not mapped by mapping {m.ref}",
            )
        else:
            self.problem(m.kind_path, f"{m.kind_label}{shown_code(kind)} is not mapped by mapping {m.ref}")
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
        encoded, bad_fields = checked_body(rule.record_type, body)
        for bad in bad_fields:
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
            encoded=(body, encoded) if encoded is not None else None,
        )

    # field values -------------------------------------------------------------------------------

    def value(self, f: CompiledField) -> Any:
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
                mapped = lookup_code(f.table, f.folded, raw, None)
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
        if value is None and not f.has_default and f.env_default is not MISSING:
            value = f.env_default
        if value is None and not failed and f.required:
            where = " or ".join(f.paths) if f.paths else "the mapping"
            self.problem(used, f.missing or f"{f.label} is required but {where} has no value")
        if value is not None and f.is_enum and value not in f.symbols:
            self.problem(used, f"{f.label} must be one of {', '.join(f.symbols)}")
            return None
        return value

    def convert(self, f: CompiledField, used: str | None, raw: Any) -> Any:
        converter = f.converter or CONVERTERS[f.type_name]
        try:
            return converter(raw, format=f.format, tz=self.tz)
        except ValueError as exc:
            self.problem(used, f"{f.label}: {exc}")
            return None

    def record_value(self, f: CompiledField) -> dict[str, Any] | None:
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

    def subject(self, compiled: CompiledSubject) -> SubjectRef | None:
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


def lookup_code(table: dict[str, Any], folded: dict[str, Any], raw: Any, default: Any) -> Any:
    candidates = raw if isinstance(raw, list) else [raw]
    for candidate in candidates:
        key = str(candidate).strip()
        if key in table:
            return table[key]
        if key.casefold() in folded:
            return folded[key.casefold()]
    return default


def matches(value: Any, cond: Any) -> bool:
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


