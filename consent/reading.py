"""Who sees which entry of a family's record: the read policy, as data, decided by pure code.

The table is ``consent/rulesets/read-policy.json``: an ordered list of rules, each a set of
conditions on the facts below and an outcome; the first rule whose every condition holds decides.
Outcomes are :attr:`Visibility.SHOWN` (the whole entry), :attr:`Visibility.REDACTED` (the entry
exists: kind, date, service, "details withheld") and :attr:`Visibility.HIDDEN` (not there at all).
Every :class:`ReadDecision` carries the deciding rule's id and plain-English reason, so "why is this
hidden" is answerable (:func:`explain`). No I/O other than reading the packaged policy.

Facts about the reader (:class:`Reader`):

* ``relation`` to the child whose record holds the entry: ``parent`` (parental responsibility, the
  child under 16 and not recorded competent), ``parent_of_young_person`` (the child controls their
  own record), ``self`` (the young person, in control of their record), ``self_not_controlling``
  (a child member reading their own record before 16 or recorded competence), ``sibling`` (a young
  person reading a brother's or sister's entries), ``coordinator`` (the household is on their
  caseload), ``agency``, ``ig`` and ``none``.
* ``consent``: what the consent engine's directives say for this reader (``permit``, ``deny`` or
  ``none``): for a coordinator, purpose care coordination with the coordinator as recipient; for a
  parent of a young person, the young person's own directives for the family. Restricted
  categories are only permitted by a directive naming them (consent rule R4).
* ``reason``: an information-governance officer gave a recorded investigation reason.

Facts about the entry (:class:`EntryFacts`): its record type, sector and category; ``restricted``
(the consent rule set's restricted categories, or a record type the read policy restricts, such as
social-care outcomes); ``family_excluded`` (the rule set's categories the safeguarding lead decides
on); ``held`` (a disclosure hold not yet released); ``third_party`` (about someone other than the
child whose record holds it); ``statutory`` (a record type a statutory duty covers).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from importlib import resources
from typing import Any

from consent.errors import RuleSetError
from consent.ruleset import RuleSet, load_ruleset

DEFAULT_READ_POLICY = "read-policy.json"


class Visibility(StrEnum):
    SHOWN = "shown"
    REDACTED = "redacted"
    HIDDEN = "hidden"


class Relation(StrEnum):
    PARENT = "parent"
    PARENT_OF_YOUNG_PERSON = "parent_of_young_person"
    SELF = "self"
    SELF_NOT_CONTROLLING = "self_not_controlling"
    SIBLING = "sibling"
    COORDINATOR = "coordinator"
    AGENCY = "agency"
    IG = "ig"
    NONE = "none"


class ConsentAnswer(StrEnum):
    PERMIT = "permit"
    DENY = "deny"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Reader:
    relation: Relation
    consent: ConsentAnswer = ConsentAnswer.NONE
    reason: bool = False


@dataclass(frozen=True, slots=True)
class EntryFacts:
    record_type: str
    sector: str
    category: str
    restricted: bool = False
    family_excluded: bool = False
    held: bool = False
    third_party: bool = False
    statutory: bool = False


@dataclass(frozen=True, slots=True)
class ReadRule:
    id: str
    when: tuple[tuple[str, Any], ...]
    outcome: Visibility
    reason: str

    def matches(self, facts: dict[str, Any]) -> bool:
        for key, want in self.when:
            have = facts[key]
            if isinstance(want, frozenset):
                if have not in want:
                    return False
            elif have != want:
                return False
        return True


@dataclass(frozen=True, slots=True)
class ReadDecision:
    visibility: Visibility
    rule_id: str
    reason: str
    policy_version: str

    @property
    def visible(self) -> bool:
        return self.visibility is not Visibility.HIDDEN


_CONDITIONS = {"relation": Relation, "consent": ConsentAnswer, "reason": bool, "restricted": bool,
               "family_excluded": bool, "held": bool, "third_party": bool, "statutory": bool}


@dataclass(frozen=True, slots=True)
class ReadPolicy:
    version: str
    rules: tuple[ReadRule, ...]
    restricted_categories: frozenset[str]
    family_excluded_categories: frozenset[str]
    restricted_record_types: frozenset[str]
    statutory_record_types: frozenset[str]
    redacted_fields: tuple[str, ...]
    #: decisions already made, by (reader, entry facts): the answer depends on nothing else
    _memo: dict[tuple[Reader, EntryFacts], ReadDecision] = field(default_factory=dict, repr=False, compare=False)
    _hidden: dict[tuple[Relation, tuple[tuple[str, bool], ...]], bool] = field(
        default_factory=dict, repr=False, compare=False)

    def facts(self, record_type: str, sector: str, category: str, *, held: bool = False,
              third_party: bool = False) -> EntryFacts:
        """The entry's facts as the policy sees them (restricted, family-excluded, statutory derived here)."""
        return EntryFacts(
            record_type, sector, category,
            restricted=category in self.restricted_categories or record_type in self.restricted_record_types,
            family_excluded=category in self.family_excluded_categories, held=held, third_party=third_party,
            statutory=record_type in self.statutory_record_types)

    def decide(self, reader: Reader, entry: EntryFacts) -> ReadDecision:
        key = (reader, entry)
        found = self._memo.get(key)
        if found is None:
            if len(self._memo) > 65536:
                self._memo.clear()
            found = self._memo[key] = self._decide(reader, entry)
        return found

    def _decide(self, reader: Reader, entry: EntryFacts) -> ReadDecision:
        facts = {"relation": reader.relation, "consent": reader.consent, "reason": reader.reason,
                 "restricted": entry.restricted, "family_excluded": entry.family_excluded, "held": entry.held,
                 "third_party": entry.third_party, "statutory": entry.statutory}
        for rule in self.rules:
            if rule.matches(facts):
                return ReadDecision(rule.outcome, rule.id, rule.reason, self.version)
        return ReadDecision(Visibility.HIDDEN, "READ-default", "No rule of the read policy applies.", self.version)

    def always_hidden(self, relation: Relation, **fixed: bool) -> bool:
        """Whether every entry with the ``fixed`` facts is hidden from ``relation`` whatever else holds
        (lets a reader's query leave such entries out before they are read)."""
        key = (relation, tuple(sorted(fixed.items())))
        found = self._hidden.get(key)
        if found is None:
            found = self._hidden[key] = self._always_hidden(relation, fixed)
        return found

    def _always_hidden(self, relation: Relation, fixed: dict[str, bool]) -> bool:
        names = ("restricted", "family_excluded", "held", "third_party", "statutory", "reason")
        free = [k for k in names if k not in fixed]
        for bits in range(1 << len(free)):
            facts = dict(fixed) | {k: bool(bits >> i & 1) for i, k in enumerate(free)}
            reason = facts.pop("reason", False)
            entry = EntryFacts("", "", "", **facts)
            for consent in ConsentAnswer:
                if self.decide(Reader(relation, consent, reason), entry).visibility is not Visibility.HIDDEN:
                    return False
        return True

    def rule(self, rule_id: str) -> ReadRule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)


def _condition(key: str, value: Any, where: str) -> tuple[str, Any]:
    kind = _CONDITIONS.get(key)
    if kind is None:
        raise RuleSetError(f"read policy: {where} has an unknown condition '{key}'")
    if kind is bool:
        if not isinstance(value, bool):
            raise RuleSetError(f"read policy: {where} condition '{key}' must be true or false")
        return key, value
    if not isinstance(value, list) or not value:
        raise RuleSetError(f"read policy: {where} condition '{key}' must be a non-empty list")
    try:
        return key, frozenset(kind(v) for v in value)
    except ValueError as exc:
        raise RuleSetError(f"read policy: {where} condition '{key}': {exc}") from None


def parse_read_policy(data: dict[str, Any], ruleset: RuleSet | None = None) -> ReadPolicy:
    """Build a :class:`ReadPolicy` from parsed JSON, with the consent rule set's restricted categories."""
    rs = ruleset if ruleset is not None else load_ruleset()
    try:
        params = data["parameters"]
        rules = []
        for i, raw in enumerate(data["rules"]):
            where = f"rule {raw.get('id', i)}"
            when = tuple(sorted(_condition(k, v, where) for k, v in raw["when"].items()))
            rules.append(ReadRule(raw["id"], when, Visibility(raw["outcome"]), raw["reason"]))
        if len({r.id for r in rules}) != len(rules):
            raise RuleSetError("read policy: a rule id is used twice")
        return ReadPolicy(
            version=str(data["version"]), rules=tuple(rules),
            restricted_categories=frozenset(c.value for c in rs.restricted_categories),
            family_excluded_categories=frozenset(c.value for c in rs.family_excluded_categories),
            restricted_record_types=frozenset(params["restricted_record_types"]),
            statutory_record_types=frozenset(params["statutory_record_types"]),
            redacted_fields=tuple(params["redacted_fields"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise RuleSetError(f"read policy is malformed: {exc}") from None


@lru_cache(maxsize=1)
def load_read_policy() -> ReadPolicy:
    """The packaged read policy (``consent/rulesets/read-policy.json``)."""
    text = resources.files("consent").joinpath("rulesets", DEFAULT_READ_POLICY).read_text(encoding="utf-8")
    return parse_read_policy(json.loads(text))


def decide_read(reader: Reader, entry: EntryFacts) -> ReadDecision:
    """Convenience: :meth:`ReadPolicy.decide` with the packaged policy."""
    return load_read_policy().decide(reader, entry)


_WORDS = {Visibility.SHOWN: "SHOWN", Visibility.REDACTED: "SHOWN WITH DETAILS WITHHELD",
          Visibility.HIDDEN: "HIDDEN"}


def explain(decision: ReadDecision) -> str:
    """Why an entry is shown, redacted or hidden, in plain English."""
    return (f"{_WORDS[decision.visibility]}: {decision.reason}\n"
            f"Decided by read rule {decision.rule_id} (read policy {decision.policy_version}).")

