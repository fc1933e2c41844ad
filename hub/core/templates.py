"""Record text templates: a record's one-line summary and its short label, as declared in its schema.

A template is a string, or a list of parts rendered in order and joined. A part is a string, or a
condition on one field:

* ``{"if": "<path>", "then": "<text>", "else": "<text>"}``: ``then`` when the field's value is
  truthy, otherwise ``else`` (empty when left out);
* ``{"if_set": "<path>", "then": …, "else": …}``: the same, testing only that the value is not null
  (so ``0`` and ``""`` count as set).

Text holds placeholders ``{path}`` or ``{path:filter}``:

* ``path`` names a field of the record, dotted for a field of a nested record (``current.id``);
  ``service_name`` is the name of the record's service (or school). Alternatives ``a|b`` take the
  first value that is not empty (or the last one when all are).
* ``filter`` is one of ``human`` (underscores become spaces), ``Human`` (and the first letter is a
  capital, the rest lower case), ``when`` (``08 Sep 2026 14:30``, or ``08 Sep 2026`` for a date),
  ``weeks`` (a number of days in whole weeks) and ``percent_of=<path>`` (the value as a whole per
  cent of the other field).

A null value renders as empty text. Templates are parsed once, when the record catalogue is read;
a malformed one is refused with :class:`ValueError`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

_PLACEHOLDER = re.compile(r"\{([^{}:]+)(?::([^{}]*))?\}")
_FILTERS = frozenset({"human", "Human", "when", "weeks", "percent_of"})
SERVICE_NAME = "service_name"

FieldPath = tuple[str, ...]


def _path(text: str) -> FieldPath:
    parts = tuple(p.strip() for p in text.split("."))
    if not all(parts):
        raise ValueError(f"bad field path {text!r}")
    return parts


def lookup(record: Mapping[str, Any], path: FieldPath) -> Any:
    """The value at ``path`` in the record (None where any step is missing)."""
    if path == (SERVICE_NAME,):
        return (record.get("service") or record.get("school") or {}).get("service_name", "")
    node: Any = record
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def _human(value: Any) -> str:
    return str(value).replace("_", " ")


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%d %b %Y %H:%M")
    if isinstance(value, date):
        return value.strftime("%d %b %Y")
    return str(value)


@dataclass(frozen=True)
class Placeholder:
    alternatives: tuple[FieldPath, ...]
    filter: str | None = None
    argument: FieldPath | None = None

    @classmethod
    def parse(cls, fields: str, spec: str | None) -> Placeholder:
        alternatives = tuple(_path(a) for a in fields.split("|"))
        if spec is None:
            return cls(alternatives)
        name, _, arg = spec.partition("=")
        if name not in _FILTERS or bool(arg) != (name == "percent_of"):
            raise ValueError(f"unknown filter {spec!r}")
        return cls(alternatives, name, _path(arg) if arg else None)

    def render(self, record: Mapping[str, Any]) -> str:
        value: Any = None
        for path in self.alternatives:
            value = lookup(record, path)
            if value:
                break
        if value is None:
            return ""
        match self.filter:
            case "human":
                return _human(value)
            case "Human":
                return _human(value).capitalize()
            case "when":
                return _when(value)
            case "weeks":
                return str(int(value) // 7)
            case "percent_of":
                whole = lookup(record, self.argument or ())
                return str(100 * int(value) // max(1, int(whole or 0)))
        return str(value)


@dataclass(frozen=True)
class Text:
    """Literal text with placeholders, parsed into pieces."""

    pieces: tuple[str | Placeholder, ...]

    @classmethod
    def parse(cls, text: Any) -> Text:
        if not isinstance(text, str):
            raise ValueError(f"template text must be a string, not {text!r}")
        pieces: list[str | Placeholder] = []
        at = 0
        for m in _PLACEHOLDER.finditer(text):
            pieces.append(text[at:m.start()])
            pieces.append(Placeholder.parse(m.group(1), m.group(2)))
            at = m.end()
        pieces.append(text[at:])
        if any("{" in p or "}" in p for p in pieces if isinstance(p, str)):
            raise ValueError(f"unbalanced braces in {text!r}")
        return cls(tuple(p for p in pieces if p != ""))

    def render(self, record: Mapping[str, Any]) -> str:
        return "".join(p if isinstance(p, str) else p.render(record) for p in self.pieces)


@dataclass(frozen=True)
class Condition:
    path: FieldPath
    then: Text
    otherwise: Text
    only_null: bool  # if_set: only a null value fails the test

    @classmethod
    def parse(cls, part: Mapping[str, Any]) -> Condition:
        keys = set(part)
        test = keys & {"if", "if_set"}
        if len(test) != 1 or not keys - test <= {"then", "else"} or "then" not in keys:
            raise ValueError(f"a condition needs one of if / if_set, then and optionally else: {dict(part)!r}")
        key = test.pop()
        return cls(_path(str(part[key])), Text.parse(part["then"]), Text.parse(part.get("else", "")),
                   key == "if_set")

    def render(self, record: Mapping[str, Any]) -> str:
        value = lookup(record, self.path)
        holds = value is not None if self.only_null else bool(value)
        return (self.then if holds else self.otherwise).render(record)


@dataclass(frozen=True)
class Template:
    """A parsed summary or label template (see the module docstring for the form)."""

    parts: tuple[Text | Condition, ...]

    @classmethod
    def parse(cls, spec: Any) -> Template:
        items = spec if isinstance(spec, list) else [spec]
        if not items:
            raise ValueError("a template needs at least one part")
        return cls(tuple(Condition.parse(p) if isinstance(p, Mapping) else Text.parse(p) for p in items))

    def render(self, record: Mapping[str, Any]) -> str:
        return "".join(p.render(record) for p in self.parts)
