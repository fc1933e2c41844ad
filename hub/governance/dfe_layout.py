"""The XML layout of a DfE statutory return as data, and a check of a file against it.

A return is a tree of :class:`Group` elements holding :class:`Item` elements, in the order the
specification gives; :func:`check_layout` walks a file and reports, one line per problem naming the
XML path, items that are missing, out of order, repeated, not in the specification, not a date or
a whole number, too long or outside their code set. Items the local authority's own system
completes (``by_la``: names, identifiers, sex, ethnicity the hub never holds) are reported as
``to_complete``, not as problems. The SEN2 (:mod:`hub.governance.sen2`) and CIN census
(:mod:`hub.governance.cin`) definitions are written with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

from lxml import etree


@dataclass(frozen=True)
class Item:
    """One data item: its element name, whether it must be there, and what it may hold."""

    name: str
    required: bool = False
    kind: str = "text"  # text | date | code | int | bool
    codes: dict[str, str] | None = None
    max_len: int | None = None
    by_la: bool = False  # person identity the local authority completes; never held by the hub


@dataclass(frozen=True)
class Group:
    name: str
    items: tuple[Item, ...] = ()
    children: tuple[tuple[Group, bool], ...] = ()  # (group, repeats)
    required: bool = False
    order: tuple[str, ...] = field(default=())


def group(name: str, items: tuple[Item, ...], children: tuple[tuple[Group, bool], ...] = (),
           required: bool = False) -> Group:
    order = tuple(i.name for i in items) + tuple(g.name for g, _ in children)
    return Group(name, items, children, required, order)


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


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
    elif item.kind == "bool" and text not in ("true", "false", "1", "0"):
        return f"{text!r} is not a boolean (true, false, 1 or 0)"
    elif item.kind == "int" and not text.isdigit():
        return f"{text!r} is not a whole number"
    elif item.kind == "code" and item.codes is not None and text not in item.codes:
        return f"{text!r} is not in the code set ({', '.join(item.codes)})"
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
            if seen[name] > 1 and not repeats:
                report.problems.append(f"{where}: appears more than once")
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
                report.problems.append(f"{path}/{item.name}: required")
    for sub, _ in group.children:
        if sub.required and sub.name not in seen:
            report.problems.append(f"{path}/{sub.name}: required")




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


def header(collection: str, label: str) -> Group:
    """The ``Header`` every DfE XML return opens with: the collection's details and the return's source."""
    details = group("CollectionDetails", (
        Item("Collection", required=True, kind="code", codes={collection: label}),
        Item("Year", required=True, kind="int"), Item("ReferenceDate", required=True, kind="date"),
    ), required=True)
    source = group("Source", (
        Item("SourceLevel", required=True, kind="code", codes={"L": "Local authority"}),
        Item("LEA", required=True, max_len=9), Item("SoftwareCode", required=True, max_len=50),
        Item("Release", required=True, max_len=20), Item("SerialNo", required=True, kind="int"),
        Item("DateTime", required=True),
    ), required=True)
    return group("Header", (), ((details, False), (source, False)), required=True)

