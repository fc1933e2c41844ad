"""Health connector: FHIR R4 / UK Core JSON, XML and NDJSON, single resources and Bundles.

Resources are validated with ``fhir.resources.R4B``, their references resolved
(:mod:`connectors.health.context`) and mapped by the source's mapping file
(``connectors/mappings/health/*.json``). Patient, Organization, Practitioner and similar resources
establish identity and services only: the mapping lists them under ``ignore`` and they emit nothing
(a Patient's NHS number is still checked). In a message Bundle the MessageHeader is skipped. A
resource type the mapping does not name is refused with a problem naming the type.

Each event's ``source_id`` is ``<resource type>/<id>`` (``Appointment/4242``), so two resource types
sharing an id are two source records.

A single resource and a ``transaction`` Bundle are all-or-nothing; ``batch``, ``collection``,
``message`` Bundles and NDJSON report bad entries and keep the good ones.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from connectors.health import context, fhir
from connectors.health.fhir import Decoded, Entry
from connectors.mapping import Mapping, builtin_mapping
from connectors.records import collect
from connectors.results import ParseResult, RecordResult, problems_to_rows
from hub.core.errors import ValidationError

SECTOR = "health"
DEFAULT_SOURCE = "uk-core-fhir"
ACCEPTED = fhir.ACCEPTED

#: Looks up the last version the hub holds of a resource: ``(resource_type, id) -> resource JSON``.
PreviousLookup = Callable[[str, str], "dict[str, Any] | None"]


def default_mapping() -> Mapping:
    return builtin_mapping(SECTOR, DEFAULT_SOURCE)


def _version(resource: dict[str, Any]) -> int:
    try:
        return int((resource.get("meta") or {}).get("versionId") or 0)
    except (TypeError, ValueError):
        return 0


def _previous_versions(entries: list[Entry]) -> dict[int, dict[str, Any]]:
    """For entries that are later versions of a resource earlier in the same payload: the one before."""
    by_key: dict[str, list[tuple[int, int, dict[str, Any]]]] = {}
    for position, entry in enumerate(entries):
        res = entry.resource
        if res is not None and res.get("id"):
            by_key.setdefault(f"{res.get('resourceType')}/{res['id']}", []).append(
                (_version(res), position, res)
            )
    previous: dict[int, dict[str, Any]] = {}
    for versions in by_key.values():
        versions.sort(key=lambda v: (v[0], v[1]))
        for (_, _, before), (_, position, _) in itertools.pairwise(versions):
            previous[position] = before
    return previous


def _results(decoded: Decoded, mapping: Mapping, lookup: PreviousLookup | None) -> Iterator[RecordResult]:
    index = context.Index.of(decoded.entries)
    previous = _previous_versions(decoded.entries)
    for position, entry in enumerate(decoded.entries):
        row, res = entry.row, entry.resource
        if entry.problems or res is None:
            yield RecordResult(row, None, tuple(entry.problems))
            continue
        kind = str(res.get("resourceType"))
        if kind == "MessageHeader" and decoded.bundle_type == "message":
            yield RecordResult(row)
            continue
        if kind in mapping.ignore:
            problems = context.check_patient(res, entry.root, row)[1] if kind == "Patient" else []
            yield RecordResult(row, None, tuple(problems))
            continue
        before = previous.get(position)
        if before is None and lookup is not None and res.get("id"):
            before = lookup(kind, str(res["id"]))
        ctx, ctx_problems = context.build(res, index, entry.root, row, before)
        ctx["$full_url"] = entry.full_url
        try:
            event = mapping.apply({**res, **ctx}, style="fhir", root=entry.root)
        except ValidationError as exc:
            engine = problems_to_rows(row, exc.problems)
            if ctx_problems:  # the reference problem explains a missing subject better than the engine can
                engine = tuple(p for p in engine if "subject identifier" not in p.message)
            yield RecordResult(row, None, tuple(ctx_problems) + engine)
            continue
        # the source id is the resource's type and id: Appointment/4242 and ServiceRequest/4242 differ
        if event is not None:  # None: a rule recognised on purpose that emits nothing
            event = replace(event, source_id=f"{kind}/{event.source_id}")
        yield RecordResult(row, event)


def results(
    decoded: Decoded, mapping: Mapping | None = None, *, previous: PreviousLookup | None = None
) -> Iterator[RecordResult]:
    """One :class:`RecordResult` per entry of an already decoded payload (``decoded.atomic`` says
    whether the caller must treat it as all-or-nothing)."""
    return _results(decoded, mapping or default_mapping(), previous)


def iter_payload(
    body: bytes | str,
    content_type: str | None,
    mapping: Mapping | None = None,
    *,
    previous: PreviousLookup | None = None,
) -> Iterator[RecordResult]:
    """One :class:`RecordResult` per resource (per Bundle entry or NDJSON line)."""
    return _results(fhir.decode(body, content_type), mapping or default_mapping(), previous)


def parse_payload(
    body: bytes | str,
    content_type: str | None,
    mapping: Mapping | None = None,
    *,
    previous: PreviousLookup | None = None,
) -> ParseResult:
    """Parse ``application/fhir+json``, ``application/fhir+xml`` or ``application/fhir+ndjson``."""
    decoded = fhir.decode(body, content_type)
    return collect(_results(decoded, mapping or default_mapping(), previous), atomic=decoded.atomic)
