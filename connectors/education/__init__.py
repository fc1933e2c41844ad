"""Education connector: school MIS / SEND team JSON and CSV events (SEN2 fields, UPN subjects).

The knowledge lives in ``connectors/mappings/education/*.json``; a new source system needs only a new
mapping file, passed as ``mapping``.
"""

from __future__ import annotations

from collections.abc import Iterator

from connectors import records
from connectors.mapping import Mapping, builtin_mapping
from connectors.results import ParseResult, RecordResult

SECTOR = "education"
DEFAULT_SOURCE = "mis-generic"
ACCEPTED = records.ACCEPTED


def default_mapping() -> Mapping:
    return builtin_mapping(SECTOR, DEFAULT_SOURCE)


def iter_payload(
    body: bytes | str, content_type: str | None, mapping: Mapping | None = None
) -> Iterator[RecordResult]:
    """One result per record (see :func:`connectors.records.iter_payload`)."""
    return records.iter_payload(body, content_type, mapping or default_mapping())


def parse_payload(body: bytes | str, content_type: str | None, mapping: Mapping | None = None) -> ParseResult:
    """Parse ``application/json`` (object or array), ``application/x-ndjson`` or ``text/csv``."""
    return records.parse_payload(body, content_type, mapping or default_mapping())
