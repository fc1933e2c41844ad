"""Loading the versioned rule-set data packaged in ``consent/rulesets/``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from consent.errors import RuleSetError
from consent.model import Basis, Category, Outcome, Purpose

DEFAULT_RULESET = "ruleset.json"

#: Rule ids the engine relies on; a rule-set file must define all of them.
REQUIRED_RULES = frozenset(
    {
        "R8-third-party",
        "R7-safeguarding-override",
        "R6-statutory-ehc-advice",
        "R1-family-copy",
        "R1-own-record",
        "R1-disclosure-hold",
        "R1-no-parental-responsibility",
        "R1-family-excluded-category",
        "R1-young-person-controls",
        "R1-not-own-record",
        "R1-kind-not-copied",
        "R5-directive-permit",
        "R5-directive-deny",
        "R4-restricted-category",
        "R2-same-agency-direct-care",
        "R3-default-deny",
    }
)


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    outcome: Outcome
    basis: Basis
    reason: str


@dataclass(frozen=True, slots=True)
class StatutoryEhc:
    purpose: Purpose
    recipient_services: frozenset[str]
    kinds: frozenset[str]
    categories: frozenset[Category]


@dataclass(frozen=True, slots=True)
class RuleSet:
    version: str
    rules: MappingProxyType[str, Rule]
    young_person_age: int
    restricted_categories: frozenset[Category]
    family_copy_kinds: frozenset[str]
    family_excluded_categories: frozenset[Category]
    statutory_ehc: StatutoryEhc
    min_justification_chars: int
    max_override_days: int

    def rule(self, rule_id: str) -> Rule:
        return self.rules[rule_id]


def _need(mapping: dict[str, Any], key: str, where: str) -> Any:
    if key not in mapping:
        raise RuleSetError(f"rule set: '{key}' is missing from {where}")
    return mapping[key]


def parse_ruleset(data: dict[str, Any]) -> RuleSet:
    """Build a :class:`RuleSet` from already-parsed JSON data (validating it)."""
    try:
        version = str(_need(data, "version", "the top level"))
        params = _need(data, "parameters", "the top level")
        rules: dict[str, Rule] = {}
        for raw in _need(data, "rules", "the top level"):
            rule = Rule(
                id=str(_need(raw, "id", "a rule")),
                outcome=Outcome(_need(raw, "outcome", "a rule")),
                basis=Basis(_need(raw, "basis", "a rule")),
                reason=str(_need(raw, "reason", "a rule")),
            )
            if rule.id in rules:
                raise RuleSetError(f"rule set: rule id '{rule.id}' is defined twice")
            rules[rule.id] = rule
        missing = REQUIRED_RULES - rules.keys()
        if missing:
            raise RuleSetError(f"rule set {version}: rules missing: {', '.join(sorted(missing))}")
        st = _need(params, "statutory_ehc", "parameters")
        ov = _need(params, "override", "parameters")
        return RuleSet(
            version=version,
            rules=MappingProxyType(rules),
            young_person_age=int(_need(params, "young_person_age", "parameters")),
            restricted_categories=frozenset(
                Category(c) for c in _need(params, "restricted_categories", "parameters")
            ),
            family_copy_kinds=frozenset(_need(params, "family_copy_kinds", "parameters")),
            family_excluded_categories=frozenset(
                Category(c) for c in _need(params, "family_excluded_categories", "parameters")
            ),
            statutory_ehc=StatutoryEhc(
                purpose=Purpose(_need(st, "purpose", "statutory_ehc")),
                recipient_services=frozenset(_need(st, "recipient_services", "statutory_ehc")),
                kinds=frozenset(_need(st, "kinds", "statutory_ehc")),
                categories=frozenset(Category(c) for c in _need(st, "categories", "statutory_ehc")),
            ),
            min_justification_chars=int(_need(ov, "min_justification_chars", "override")),
            max_override_days=int(_need(ov, "max_duration_days", "override")),
        )
    except RuleSetError:
        raise
    except (TypeError, ValueError, AttributeError) as exc:
        raise RuleSetError(f"rule set is malformed: {exc}") from None


@lru_cache(maxsize=8)
def _load_packaged(name: str) -> RuleSet:
    try:
        text = resources.files("consent").joinpath("rulesets", name).read_text(encoding="utf-8")
    except (FileNotFoundError, OSError) as exc:
        raise RuleSetError(f"rule set '{name}' is not packaged in consent/rulesets/: {exc}") from None
    return parse_ruleset(_json(text, name))


def _json(text: str, name: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RuleSetError(f"rule set '{name}' is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RuleSetError(f"rule set '{name}' must be a JSON object")
    return data


def load_ruleset(path: str | Path | None = None) -> RuleSet:
    """Load the packaged rule set (default) or a rule-set JSON file at ``path``."""
    if path is None:
        return _load_packaged(DEFAULT_RULESET)
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleSetError(f"cannot read rule set file {p.name}: {exc.strerror}") from None
    return parse_ruleset(_json(text, p.name))
