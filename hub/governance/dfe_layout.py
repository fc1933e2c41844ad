"""The XML layout of a DfE statutory return as data, and a check of a file against it.

A return is a tree of :class:`Group` elements holding :class:`Item` elements, in the order the
specification gives; :func:`check_layout` walks a file and reports, one line per problem naming the
XML path and the rule broken, items that are missing (mandatory), out of order, repeated more often
than allowed, not in the specification, not a date, a date-time or a whole number, not of the
pattern the specification gives, too long or outside their code set (named, with its codes). Items
the local authority's own system completes (``by_la``: names, identifiers, sex, ethnicity and the
placement facts the hub never holds) are reported as ``to_complete``, not as problems. The SEN2
(:mod:`hub.governance.sen2`) and CIN census (:mod:`hub.governance.cin`) definitions are written with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

from lxml import etree

from hub.core.limits import ascii_digits


@dataclass(frozen=True)
class Item:
    """One data item: its element name, whether it must be there, and what it may hold."""

    name: str
    required: bool = False
    kind: str = "text"  # text | date | datetime | code | int | bool
    codes: dict[str, str] | None = None
    max_len: int | None = None
    by_la: bool = False  # what the local authority completes (person identity, ...); never held by the hub
    pattern: str | None = None  # a regular expression the whole value must match (the specification's)
    code_set: str = ""  # the code set's name, for problems (default: the item's name)


@dataclass(frozen=True)
class Group:
    name: str
    items: tuple[Item, ...] = ()
    children: tuple[tuple[Group, bool | int], ...] = ()  # (group, repeats: True unbounded, False once, n at most n)
    required: bool = False
    order: tuple[str, ...] = field(default=())
    by_la: bool = False  # when missing, the local authority completes it (reported as to_complete)


def group(name: str, items: tuple[Item, ...], children: tuple[tuple[Group, bool | int], ...] = (),
          required: bool = False, *, by_la: bool = False, order: tuple[str, ...] | None = None) -> Group:
    """A group whose items come first, then its child groups, unless ``order`` names them all in the
    specification's order (items and groups mixed)."""
    default = tuple(i.name for i in items) + tuple(g.name for g, _ in children)
    return Group(name, items, children, required, order or default, by_la)


def _most(repeats: bool | int) -> int | None:
    """How many times a child group may appear: None for unbounded."""
    if repeats is True:
        return None
    return 1 if repeats is False else int(repeats)


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?$")


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    to_complete: set[str] = field(default_factory=set)  # person items left for the local authority


def _value_problem(item: Item, text: str) -> str | None:
    if item.kind == "date":
        if not _DATE.match(text):
            return f"{text!r} is not a date as yyyy-mm-dd"
        try:
            date.fromisoformat(text)
        except ValueError:
            return f"{text!r} is not a calendar date"
    elif item.kind == "datetime" and not _DATETIME.match(text):
        return f"{text!r} is not a date-time as yyyy-mm-ddThh:mm:ss"
    elif item.kind == "bool" and text not in ("true", "false", "1", "0"):
        return f"{text!r} is not a boolean (true, false, 1 or 0)"
    elif item.kind == "int" and not ascii_digits(text):
        return f"{text!r} is not a whole number"
    elif item.kind == "code" and item.codes is not None and text not in item.codes:
        return f"{text!r} is not in the code set {item.code_set or item.name} ({', '.join(item.codes)})"
    if item.pattern is not None and not re.fullmatch(item.pattern, text):
        return f"{text!r} does not match the pattern {item.pattern}"
    if item.max_len is not None and len(text) > item.max_len:
        return f"is longer than {item.max_len} characters"
    return None


def _check_group(el: etree._Element, group: Group, path: str, report: Report, spec: str) -> None:
    items = {i.name: i for i in group.items}
    kids = {g.name: (g, repeats) for g, repeats in group.children}
    seen: dict[str, int] = {}
    positions = []
    for child in el:
        if not isinstance(child.tag, str):
            continue  # comments and processing instructions
        name = child.tag
        where = f"{path}/{name}"
        seen[name] = seen.get(name, 0) + 1
        if name in items:
            positions.append(group.order.index(name))
            text = (child.text or "").strip()
            problem = _value_problem(items[name], text) if text else f"{where} is empty"
            if problem:
                report.problems.append(f"{where}: {problem}")
        elif name in kids:
            positions.append(group.order.index(name))
            sub, repeats = kids[name]
            most = _most(repeats)
            if most is not None and seen[name] == most + 1:
                report.problems.append(f"{where}: appears more than {'once' if most == 1 else f'{most} times'}")
            _check_group(child, sub, where, report, spec)
        else:
            report.problems.append(f"{where}: not an item of {group.name} in {spec}")
    if positions != sorted(positions):
        report.problems.append(f"{path}: items out of the specification's order ({', '.join(group.order)})")
    for item in group.items:
        if item.required and item.name not in seen:
            if item.by_la:
                report.to_complete.add(item.name)
            else:
                report.problems.append(f"{path}/{item.name}: required (a mandatory item of {group.name})")
    for sub, _ in group.children:
        if sub.required and sub.name not in seen:
            if sub.by_la:
                report.to_complete.add(sub.name)
            else:
                report.problems.append(f"{path}/{sub.name}: required (a mandatory group of {group.name})")


def check_layout(xml: bytes, message: Group, spec: str) -> tuple[Report, etree._Element | None]:
    """Check ``xml`` against the ``message`` group of specification ``spec``; the parsed root for further
    checks between items (None when the file is not well-formed or has another root)."""
    report = Report()
    try:
        root = etree.fromstring(xml, parser=etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        report.problems.append(f"not well-formed XML: {exc}")
        return report, None
    if root.tag != message.name:
        report.problems.append(f"the root element is {root.tag}, not {message.name}")
        return report, None
    _check_group(root, message, message.name, report, spec)
    return report, root


def header(collection: str, label: str, *, source_extra: tuple[Item, ...] = (),
           serial_pattern: str | None = None) -> Group:
    """The ``Header`` every DfE XML return opens with: the collection's details and the return's source.

    ``LEA`` is the authority's 3-digit DfE local-authority number (the pattern of the DfE schemas);
    ``source_extra`` are a collection's own ``Source`` items after ``DateTime`` (SEN2's DMO and DCO).
    """
    details = group("CollectionDetails", (
        Item("Collection", required=True, kind="code", codes={collection: label}),
        Item("Year", required=True, kind="int", pattern=r"\d{4}"), Item("ReferenceDate", required=True, kind="date"),
    ), required=True)
    source = group("Source", (
        Item("SourceLevel", required=True, kind="code", codes={"L": "Local authority"}),
        Item("LEA", required=True, pattern=r"\d{3}"), Item("SoftwareCode", required=True, max_len=50),
        Item("Release", required=True, max_len=20), Item("SerialNo", required=True, kind="int", pattern=serial_pattern),
        Item("DateTime", required=True, kind="datetime"), *source_extra,
    ), required=True)
    return group("Header", (), ((details, False), (source, False)), required=True)
