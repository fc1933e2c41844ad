"""Compiling a mapping's rules for running.

A rule's field specs are expanded (``ref``/shorthand), their paths parsed, converters and lookup
tables chosen once per mapping (:attr:`connectors.mapping.Mapping.compiled`), not once per field per
record. The compiled form computes exactly what the specs say; only where the work happens changes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import tzinfo
from typing import Any

from connectors.mapping_spec import ENVELOPE_DEFAULTS, ENVELOPE_INFO, Limits, Rule, expand_spec, spec_paths
from connectors.paths import compile_resolver
from connectors.schemas import FieldInfo, body_fields
from connectors.values import COMPUTATIONS, CONVERTERS, DEFAULT_FOR_KIND, to_string, zone

#: A field with no envelope default.
MISSING = object()


class CompiledField:
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
        spec = expand_spec(raw, defs)
        self.name, self.label, self.spec, self.info = name, f"{prefix}{name}", spec, info
        self.paths = tuple(spec_paths(spec))
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
        self.env_default = ENVELOPE_DEFAULTS.get(name, MISSING) if not prefix else MISSING
        self.is_enum, self.symbols = info.kind == "enum", info.symbols
        self.is_record = info.kind == "record"
        self.subs: list[tuple[str, CompiledField | None, FieldInfo]] = []
        self.no_subs = False
        self.probe: tuple[bool, tuple[Callable[[Any], Any], ...]] | None = None
        if self.is_record:
            sub_specs: dict[str, Any] = dict(spec.get("fields", {}))
            if "sector" in info.fields and "sector" not in sub_specs:
                sub_specs["sector"] = {"const": sector}
            self.no_subs = not sub_specs
            if sub_specs and (info.nullable or not self.required):
                key = spec.get("when_present") or next(iter(sub_specs))
                probe = expand_spec(sub_specs[key], defs)
                self.probe = ("const" in probe, tuple(compile_resolver(p) for p in spec_paths(probe)))
            for sub_name, sub_info in info.fields.items():
                sub = (
                    CompiledField(sub_name, f"{self.label}.", sub_specs[sub_name], sub_info, defs, sector)
                    if sub_name in sub_specs
                    else None
                )
                self.subs.append((sub_name, sub, sub_info))


class CompiledSubject:
    """A rule's subject alternatives: (identifier system, paths) in order."""

    def __init__(self, specs: Any) -> None:
        alternatives = specs if isinstance(specs, list) else [specs] if specs else []
        self.alternatives = [(alt, [(p, compile_resolver(p)) for p in spec_paths(alt)]) for alt in alternatives]
        self.expected = " or ".join(f"{a['system']} at {p}" for a in alternatives for p in spec_paths(a))
        self.first = spec_paths(alternatives[0])[0] if alternatives and spec_paths(alternatives[0]) else None


class CompiledRule:
    """One rule: its conditions, envelope, subject and body fields compiled, and its date limits."""

    def __init__(self, rule: Rule, *, defs: dict[str, Any], sector: str, limits: Limits) -> None:
        self.rule = rule
        self.when = [(compile_resolver(p), cond) for p, cond in rule.when.items()]
        if not rule.record_type:
            return
        self.envelope = [
            (name, CompiledField(name, "", rule.envelope.get(name, {}), info, defs, sector))
            for name, info in ENVELOPE_INFO.items()
        ]
        self.subject = CompiledSubject(rule.envelope.get("subject"))
        fields = body_fields(rule.record_type)
        self.plain: list[tuple[str, CompiledField]] = []
        self.computed: list[tuple[str, Callable[..., Any], list[str]]] = []
        for name, spec in rule.body.items():
            expanded = expand_spec(spec, defs)
            if "compute" in expanded:
                compute = expanded["compute"]
                self.computed.append((name, COMPUTATIONS[compute["fn"]], list(compute.get("args", []))))
            else:
                self.plain.append((name, CompiledField(name, "", spec, fields[name], defs, sector)))
        self.occurred_limits = spec_date_limits(
            rule.envelope.get("occurred_at"), limits.occurred_at_max_future_days, defs
        )
        self.date_limits = {
            name: spec_date_limits(spec, limits.max_future_days, defs) for name, spec in rule.body.items()
        }
        self.checks = [
            (check, next(iter(spec_paths(expand_spec(rule.body[check["field"]], defs))), None)) for check in rule.checks
        ]


def spec_date_limits(spec: Any, max_future_days: int, defs: dict[str, Any]) -> tuple[str | None, int]:
    spec = expand_spec(spec or {}, defs)
    return next(iter(spec_paths(spec)), None), spec.get("max_future_days", max_future_days)


class CompiledMapping:
    """A mapping's rules compiled for running, with the rules of each kind in order."""

    def __init__(self, rules: tuple[Rule, ...], *, defs: dict[str, Any], sector: str, limits: Limits,
                 timezone: str | None, kind_path: str) -> None:
        self.tz: tzinfo | None = zone(timezone)
        self.kind = compile_resolver(kind_path)
        self.by_kind: dict[str, list[CompiledRule]] = {}
        for rule in rules:
            self.by_kind.setdefault(rule.kind, []).append(CompiledRule(rule, defs=defs, sector=sector, limits=limits))


