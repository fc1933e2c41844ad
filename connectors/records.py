"""Generic record pipeline for JSON / NDJSON / CSV event feeds (social care, education, ...).

A sector connector is a default mapping plus :func:`iter_payload` / :func:`parse_payload` bound to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from connectors import formats
from connectors.mapping import Mapping, builtin_mapping
from connectors.results import ParseResult, RecordResult, problems_to_rows
from hub.core.errors import Problem, ValidationError

ACCEPTED = formats.JSON + formats.CSV + formats.NDJSON


def map_record(
    mapping: Mapping, record: dict[str, Any], row: int | None, *, style: str, root: str = ""
) -> RecordResult:
    """Apply ``mapping`` to one record, turning refusal into per-row problems."""
    try:
        return RecordResult(row, mapping.apply(record, style=style, root=root))
    except ValidationError as exc:
        return RecordResult(row, None, problems_to_rows(row, exc.problems))


def _from_pairs(
    pairs: Iterable[tuple[int, dict[str, Any] | Problem]], mapping: Mapping, style: str
) -> Iterator[RecordResult]:
    for row, item in pairs:
        if isinstance(item, Problem):
            yield RecordResult(row, None, (item,))
        else:
            yield map_record(mapping, item, row, style=style)


def iter_payload(body: bytes | str, content_type: str | None, mapping: Mapping) -> Iterator[RecordResult]:
    """One :class:`RecordResult` per record. A single JSON object yields one result with ``row=None``.

    Raises :class:`ValidationError` for a payload that cannot be read at all (wrong content type,
    malformed JSON, an empty CSV).
    """
    media = formats.require(content_type, ACCEPTED)
    if media in formats.CSV:
        yield from _from_pairs(formats.iter_csv(body), mapping, "column")
    elif media in formats.NDJSON:
        yield from _from_pairs(formats.iter_ndjson(body), mapping, "pointer")
    else:
        data = formats.load_json(body)
        if isinstance(data, dict):
            yield map_record(mapping, data, None, style="pointer")
        elif isinstance(data, list):
            for index, item in enumerate(data):
                if isinstance(item, dict):
                    yield map_record(mapping, item, index, style="pointer")
                else:
                    yield RecordResult(
                        index, None, (Problem(f"/{index}", "must be a JSON object", index),)
                    )
        else:
            raise ValidationError(Problem("", "JSON payload must be an object or an array of objects"))


def collect(results: Iterable[RecordResult], *, atomic: bool = False) -> ParseResult:
    """Gather results. A single record (``row is None``) or an ``atomic`` batch is all-or-nothing."""
    parsed = ParseResult()
    for result in results:
        parsed.add(result)
        atomic = atomic or result.row is None
    if atomic and parsed.problems:
        raise ValidationError([p.in_payload() for p in parsed.problems])
    return parsed


def parse_payload(body: bytes | str, content_type: str | None, mapping: Mapping) -> ParseResult:
    """Parse a JSON object (all-or-nothing), JSON array, NDJSON or CSV batch (bad rows reported)."""
    return collect(iter_payload(body, content_type, mapping))


class SectorConnector:
    """A sector's JSON/NDJSON/CSV connector: the shared engine plus that sector's default mapping."""

    def __init__(self, sector: str, default_source: str) -> None:
        self.sector = sector
        self.default_source = default_source

    def default_mapping(self) -> Mapping:
        return builtin_mapping(self.sector, self.default_source)

    def iter_payload(self, body: bytes | str, content_type: str | None,
                     mapping: Mapping | None = None) -> Iterator[RecordResult]:
        """One result per record (see :func:`iter_payload`)."""
        return iter_payload(body, content_type, mapping or self.default_mapping())

    def parse_payload(self, body: bytes | str, content_type: str | None,
                      mapping: Mapping | None = None) -> ParseResult:
        """Parse ``application/json`` (object or array), ``application/x-ndjson`` or ``text/csv``."""
        return parse_payload(body, content_type, mapping or self.default_mapping())
