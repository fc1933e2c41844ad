"""A small FHIRPath-like path language over parsed JSON (dicts and lists).

    status                      a key
    period.start                nested keys; lists on the way are walked and flattened
    identifier[0].value         an index into the collection so far
    coding[*].code              every element (the same as walking the list)
    identifier[system=https://fhir.nhs.uk/Id/nhs-number].value
                                elements whose key equals a value
    .                           the whole record

A path resolves to ``None`` (nothing), one value, or a list when several values match.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Any

_SEGMENT = re.compile(r"^(?P<name>[^\[\]]*)(?P<selectors>(\[[^\]]*\])*)$")
_SELECTOR = re.compile(r"\[([^\]]*)\]")


def _split(path: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in path:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        if char == "." and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p for p in parts if p]


@cache
def compile_path(path: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Parse ``path`` into (name, selectors) steps; raise ``ValueError`` if it is malformed."""
    steps = []
    for part in _split(path.strip()):
        match = _SEGMENT.match(part)
        if not match:
            raise ValueError(f"malformed path {path!r}")
        steps.append((match["name"], tuple(_SELECTOR.findall(match["selectors"]))))
    return tuple(steps)


def _flatten(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for value in values:
        if isinstance(value, list):
            out.extend(v for v in value if v is not None)
        elif value is not None:
            out.append(value)
    return out


def _select(values: list[Any], selector: str) -> list[Any]:
    if selector in ("*", ""):
        return values
    if selector.lstrip("-").isdigit():
        index = int(selector)
        return [values[index]] if -len(values) <= index < len(values) else []
    key, _, expected = selector.partition("=")
    return [v for v in values if isinstance(v, dict) and str(v.get(key.strip())) == expected.strip()]


def resolve_all(data: Any, path: str) -> list[Any]:
    """Every value ``path`` reaches in ``data`` (an empty list when there is none)."""
    values = _flatten([data])
    for name, selectors in compile_path(path):
        if name:
            values = _flatten([v.get(name) for v in values if isinstance(v, dict)])
        for selector in selectors:
            values = _select(values, selector)
    return values


def resolve(data: Any, path: str) -> Any:
    """The value at ``path``: ``None``, the single value, or a list of the values found."""
    values = resolve_all(data, path)
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def _one_or_many(values: list[Any]) -> Any:
    if not values:
        return None
    return values[0] if len(values) == 1 else values


@cache
def compile_resolver(path: str) -> Callable[[Any], Any]:
    """A function equivalent to ``lambda data: resolve(data, path)``, with the path parsed once.

    A plain key (the common case: a CSV column or a top-level JSON field) is looked up directly.
    """
    steps = compile_path(path)
    if len(steps) == 1 and steps[0][0] and not steps[0][1]:
        name = steps[0][0]

        def key(data: Any) -> Any:
            if isinstance(data, dict):
                value = data.get(name)
            elif isinstance(data, list):
                return _one_or_many(_walk(data, steps))
            else:
                return None
            if isinstance(value, list):
                return _one_or_many([v for v in value if v is not None])
            return value

        return key

    def walk(data: Any) -> Any:
        return _one_or_many(_walk(data, steps))

    return walk


def _walk(data: Any, steps: tuple[tuple[str, tuple[str, ...]], ...]) -> list[Any]:
    values = _flatten([data])
    for name, selectors in steps:
        if name:
            values = _flatten([v.get(name) for v in values if isinstance(v, dict)])
        for selector in selectors:
            values = _select(values, selector)
    return values


def render(path: str, style: str, root: str = "") -> str:
    """A location for ``path``: a JSON pointer (``pointer``), FHIR path (``fhir``) or CSV column."""
    if style == "column":
        return path
    if path.startswith("$"):  # a value the connector resolved (e.g. a referenced Organization)
        return root or path
    if style == "fhir":
        return f"{root}.{path}" if root else path
    pointer = "/" + "/".join(
        name + "".join(f"/{s}" if s.isdigit() else f"[{s}]" for s in selectors)
        for name, selectors in compile_path(path)
    )
    return f"{root}{pointer}"
