"""The parts of a mapping file: rules, date limits, the envelope fields every event has, and field specs.

A field spec is a column name (shorthand), a constant, or an object with ``path``, ``map``, ``type``,
``ref`` (to a ``defs`` entry) and so on; see ``connectors/mappings/README.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from connectors.schemas import FieldInfo

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

ENVELOPE_INFO: Mapping[str, FieldInfo] = MappingProxyType({
    "source_id": FieldInfo("source_id", "string"),
    "source_version": FieldInfo("source_version", "int", has_default=True),
    "occurred_at": FieldInfo("occurred_at", "timestamp"),
    "category": FieldInfo("category", "enum", has_default=True, symbols=CATEGORIES),
    "status": FieldInfo("status", "enum", has_default=True, symbols=STATUSES),
})
ENVELOPE_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {"source_version": 1, "category": "general", "status": "active"}
)


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


def spec_paths(spec: Any) -> list[str]:
    if not isinstance(spec, dict) or "path" not in spec:
        return []
    path = spec["path"]
    return [path] if isinstance(path, str) else list(path)


def expand_spec(spec: Any, defs: dict[str, Any]) -> dict[str, Any]:
    if isinstance(spec, str):  # shorthand: "column_name"
        return {"path": spec}
    if not isinstance(spec, dict):
        return {"const": spec}
    if "ref" in spec:
        base = expand_spec(defs[spec["ref"]], defs)
        return {**base, **{k: v for k, v in spec.items() if k != "ref"}}
    return spec
