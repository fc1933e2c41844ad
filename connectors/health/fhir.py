"""Decode FHIR R4 payloads (JSON, XML, NDJSON; single resources and Bundles) and validate each
resource with the ``fhir.resources.R4B`` models.

Each resource becomes an :class:`Entry` holding its JSON form, or the problems that refused it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pydantic
from fhir.resources.R4B import get_fhir_model_class
from lxml import etree

from connectors import formats
from hub.core.errors import Problem, ValidationError, plain_error
from hub.core.limits import MAX_JSON_DEPTH
from hub.core.privacy import scrub

FHIR_NS = "http://hl7.org/fhir"
ACCEPTED = formats.FHIR_JSON + formats.JSON + formats.FHIR_XML + formats.FHIR_NDJSON + formats.NDJSON
BUNDLE_TYPES = ("transaction", "batch", "collection", "message", "searchset", "history")


@dataclass
class Entry:
    """One resource of a payload. ``row`` is the Bundle entry index or NDJSON line (None if single)."""

    row: int | None
    root: str
    resource: dict[str, Any] | None = None
    full_url: str | None = None
    problems: list[Problem] = field(default_factory=list)


@dataclass
class Decoded:
    entries: list[Entry]
    atomic: bool  # a single resource or a transaction Bundle: all-or-nothing
    bundle_type: str | None = None


def _loc(root: str, loc: tuple[Any, ...]) -> str:
    out = root
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def model_class(resource_type: Any) -> type[Any] | None:
    """The ``fhir.resources`` R4 model of a resource type name, or None if it is not a FHIR R4 resource."""
    if not isinstance(resource_type, str) or resource_type == "":
        return None
    try:
        return get_fhir_model_class(resource_type)  # type: ignore[no-any-return]
    except (KeyError, ValueError, AttributeError, ModuleNotFoundError):
        return None


def validate_resource(resource: Any, root: str, row: int | None) -> list[Problem]:
    """Problems with one resource's FHIR R4 structure (empty when it is valid)."""
    if not isinstance(resource, dict):
        return [Problem(root, "a FHIR resource must be a JSON object", row)]
    resource_type = resource.get("resourceType")
    model = model_class(resource_type)
    if model is None:
        # what was sent is not repeated: it is no resource type, and could be anything (a name)
        return [Problem(f"{root}.resourceType", "resourceType is not a FHIR R4 resource type", row)]
    try:
        model.model_validate(resource)
    except pydantic.ValidationError as exc:
        return [Problem(_loc(root, loc), scrub(msg), row) for loc, msg in map(plain_error, exc.errors())]
    return []


def _entries_from_json(data: Any, row: int | None, single_root: str | None = None) -> Decoded:
    if not isinstance(data, dict):
        raise ValidationError(Problem("", "FHIR JSON payload must be a resource object"))
    if data.get("resourceType") != "Bundle":
        root = single_root or str(data.get("resourceType") or "Resource")
        return Decoded([Entry(row, root, data, None, validate_resource(data, root, row))], atomic=True)
    bundle_type = data.get("type")
    if bundle_type not in BUNDLE_TYPES:
        raise ValidationError(Problem("Bundle.type", f"Bundle.type must be one of {', '.join(BUNDLE_TYPES)}"))
    raw_entries = data.get("entry") or []
    if not isinstance(raw_entries, list):
        raise ValidationError(Problem("Bundle.entry", "Bundle.entry must be an array"))
    entries = []
    for index, raw in enumerate(raw_entries):
        root = f"Bundle.entry[{index}].resource"
        resource = raw.get("resource") if isinstance(raw, dict) else None
        full_url = raw.get("fullUrl") if isinstance(raw, dict) else None
        if resource is None:
            entries.append(
                Entry(index, root, None, full_url, [Problem(root, "entry has no resource", index)])
            )
            continue
        entries.append(Entry(index, root, resource, full_url, validate_resource(resource, root, index)))
    return Decoded(entries, atomic=bundle_type == "transaction", bundle_type=bundle_type)


# --- XML ----------------------------------------------------------------------------------------

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def _local(element: Any) -> str:
    return str(etree.QName(element).localname)


def _xml_resource(element: Any, root: str, row: int | None) -> tuple[dict[str, Any] | None, list[Problem]]:
    name = _local(element)
    model = model_class(name)
    if model is None:
        return None, [
            Problem(f"{root}.resourceType", "the element is not a FHIR R4 resource type", row)
        ]
    try:
        parsed = model.model_validate_xml(etree.tostring(element))
    except pydantic.ValidationError as exc:
        return None, [
            Problem(_loc(root, loc), scrub(msg), row) for loc, msg in map(plain_error, exc.errors())
        ]
    except (ValueError, TypeError, RecursionError, etree.LxmlError) as exc:
        return None, [
            Problem(root, scrub(f"{name} could not be read from XML: {type(exc).__name__}"), row)
        ]
    return json.loads(parsed.model_dump_json()), []


def _xml_depth(document: Any) -> int:
    """How deep elements nest (no recursion: a chain of 150 extensions is read like any other)."""
    depth = deepest = 0
    for action, _ in etree.iterwalk(document, events=("start", "end")):
        depth += 1 if action == "start" else -1
        deepest = max(deepest, depth)
    return deepest


def _child_value(element: Any, name: str) -> str | None:
    child = element.find(f"{{{FHIR_NS}}}{name}")
    return None if child is None else child.get("value")


def _entries_from_xml(body: bytes | str) -> Decoded:
    try:
        document = etree.fromstring(body.encode() if isinstance(body, str) else body, _PARSER)
    except etree.XMLSyntaxError as exc:
        line = exc.lineno or 0
        raise ValidationError(Problem("", f"malformed XML at line {line}"), title="Malformed XML") from None
    if _xml_depth(document) > MAX_JSON_DEPTH:
        raise ValidationError(Problem("", f"XML nests deeper than {MAX_JSON_DEPTH} elements"),
                              title="XML breaks a shape limit")
    if etree.QName(document).namespace != FHIR_NS:
        raise ValidationError(Problem("", f"XML root element is not in the FHIR namespace {FHIR_NS}"))
    if _local(document) != "Bundle":
        root = _local(document)
        resource, problems = _xml_resource(document, root, None)
        return Decoded([Entry(None, root, resource, None, problems)], atomic=True)
    bundle_type = _child_value(document, "type")
    if bundle_type not in BUNDLE_TYPES:
        raise ValidationError(Problem("Bundle.type", f"Bundle.type must be one of {', '.join(BUNDLE_TYPES)}"))
    entries = []
    for index, entry in enumerate(document.findall(f"{{{FHIR_NS}}}entry")):
        root = f"Bundle.entry[{index}].resource"
        holder = entry.find(f"{{{FHIR_NS}}}resource")
        children = [] if holder is None else [c for c in holder if isinstance(c.tag, str)]
        if not children:
            entries.append(Entry(index, root, None, None, [Problem(root, "entry has no resource", index)]))
            continue
        resource, problems = _xml_resource(children[0], root, index)
        entries.append(Entry(index, root, resource, _child_value(entry, "fullUrl"), problems))
    return Decoded(entries, atomic=bundle_type == "transaction", bundle_type=bundle_type)


# --- entry point --------------------------------------------------------------------------------


def decode(body: bytes | str, content_type: str | None) -> Decoded:
    """Decode a FHIR payload into entries; raise :class:`ValidationError` if it cannot be read at all."""
    media = formats.require(content_type, ACCEPTED)
    if media in formats.FHIR_XML:
        return _entries_from_xml(body)
    if media in formats.FHIR_NDJSON + formats.NDJSON:
        entries = []
        for line, item in formats.iter_ndjson(body):
            if isinstance(item, Problem):
                entries.append(Entry(line, f"line {line}", None, None, [item]))
                continue
            root = str(item.get("resourceType") or "Resource")
            entries.extend(_entries_from_json(item, line, root).entries)
        return Decoded(entries, atomic=False)
    return _entries_from_json(formats.load_json(body), None)
