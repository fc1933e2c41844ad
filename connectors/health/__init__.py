"""Health connector: FHIR R4 / UK Core JSON, XML and NDJSON, single resources and Bundles.

Resources are validated with ``fhir.resources.R4B``, their references resolved
(:mod:`connectors.health.context`) and mapped by the source's mapping file
(``connectors/mappings/health/*.json``). Patient, Organization, Practitioner and similar resources
establish identity and services only: the mapping lists them under ``ignore`` and they emit nothing
(a Patient's NHS number is still checked; a Patient without one is taken on its local identifier).
With a :class:`~connectors.health.directory.ReferenceDirectory` they are also handed back as
:class:`~connectors.results.Remembered` for the caller to keep once the payload is accepted, and
references the payload cannot resolve are looked up there. In a message Bundle the MessageHeader is
skipped. A resource type the mapping does not name is refused with a problem naming the type.

Versions: a numeric ``meta.versionId`` is the source version. Any other ``versionId`` (FHIR allows
any string) gives way to ``meta.lastUpdated`` in epoch milliseconds, which increases with each
update; without either the version is 1. (``$version`` in the mapping.)

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
from connectors.health.directory import REMEMBERED, ReferenceDirectory, summary
from connectors.health.fhir import Decoded, Entry
from connectors.mapping import Mapping, builtin_mapping
from connectors.records import collect
from connectors.results import ParseResult, RecordResult, Remembered, problems_to_rows
from connectors.values import to_datetime
from hub.core.errors import ValidationError

SECTOR = "health"
DEFAULT_SOURCE = "uk-core-fhir"
ACCEPTED = fhir.ACCEPTED

#: Looks up the last version the hub holds of a resource: ``(resource_type, id) -> resource JSON``.
PreviousLookup = Callable[[str, str], "dict[str, Any] | None"]


def default_mapping() -> Mapping:
    return builtin_mapping(SECTOR, DEFAULT_SOURCE)


def version(resource: dict[str, Any]) -> int:
    """The source version: a numeric ``meta.versionId``, else ``meta.lastUpdated`` in epoch
    milliseconds, else 1."""
    meta: dict[str, Any] = resource["meta"] if isinstance(resource.get("meta"), dict) else {}
    raw = str(meta.get("versionId") or "").strip()
    if raw.isdigit() and len(raw) <= 15:
        return int(raw)
    if meta.get("lastUpdated"):
        try:
            return int(to_datetime(meta["lastUpdated"]).timestamp() * 1000)
        except ValueError:
            pass
    return 1


def _previous_versions(entries: list[Entry]) -> dict[int, dict[str, Any]]:
    """For entries that are later versions of a resource earlier in the same payload: the one before."""
    by_key: dict[str, list[tuple[int, int, dict[str, Any]]]] = {}
    for position, entry in enumerate(entries):
        res = entry.resource
        if res is not None and res.get("id"):
            by_key.setdefault(f"{res.get('resourceType')}/{res['id']}", []).append(
                (version(res), position, res)
            )
    previous: dict[int, dict[str, Any]] = {}
    for versions in by_key.values():
        versions.sort(key=lambda v: (v[0], v[1]))
        for (_, _, before), (_, position, _) in itertools.pairwise(versions):
            previous[position] = before
    return previous


def _context_only(entry: Entry, res: dict[str, Any], directory: ReferenceDirectory | None) -> RecordResult:
    """A resource the mapping ignores: a Patient's identifiers are checked; what the directory keeps."""
    kind = str(res.get("resourceType"))
    patient, problems = context.check_patient(res, entry.root, entry.row) if kind == "Patient" else (None, [])
    remember = None
    if directory is not None and kind in REMEMBERED and res.get("id") and not problems:
        kept = summary(res, context.identity(patient) if patient else None)
        remember = Remembered(kind, str(res["id"]), kept, version(res))
    return RecordResult(entry.row, None, tuple(problems), remember=remember)


def _results(
    decoded: Decoded, mapping: Mapping, lookup: PreviousLookup | None, directory: ReferenceDirectory | None = None
) -> Iterator[RecordResult]:
    index = context.Index.of(decoded.entries, directory)
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
            yield _context_only(entry, res, directory)
            continue
        before = previous.get(position)
        if before is None and lookup is not None and res.get("id"):
            before = lookup(kind, str(res["id"]))
        ctx, ctx_problems = context.build(res, index, entry.root, row, before)
        ctx["$full_url"] = entry.full_url
        ctx["$version"] = version(res)
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
    decoded: Decoded,
    mapping: Mapping | None = None,
    *,
    previous: PreviousLookup | None = None,
    directory: ReferenceDirectory | None = None,
) -> Iterator[RecordResult]:
    """One :class:`RecordResult` per entry of an already decoded payload (``decoded.atomic`` says
    whether the caller must treat it as all-or-nothing). ``directory``: the sending agency's
    remembered resources (references resolve there when the payload does not hold them)."""
    return _results(decoded, mapping or default_mapping(), previous, directory)


def iter_payload(
    body: bytes | str,
    content_type: str | None,
    mapping: Mapping | None = None,
    *,
    previous: PreviousLookup | None = None,
    directory: ReferenceDirectory | None = None,
) -> Iterator[RecordResult]:
    """One :class:`RecordResult` per resource (per Bundle entry or NDJSON line)."""
    return _results(fhir.decode(body, content_type), mapping or default_mapping(), previous, directory)


def parse_payload(
    body: bytes | str,
    content_type: str | None,
    mapping: Mapping | None = None,
    *,
    previous: PreviousLookup | None = None,
    directory: ReferenceDirectory | None = None,
) -> ParseResult:
    """Parse ``application/fhir+json``, ``application/fhir+xml`` or ``application/fhir+ndjson``."""
    decoded = fhir.decode(body, content_type)
    return collect(_results(decoded, mapping or default_mapping(), previous, directory), atomic=decoded.atomic)
