"""Read agency files for the CLI: single files, directories and NDJSON, one result per record."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from connectors import education, health, social_care
from connectors.mapping import Mapping
from connectors.results import RecordResult, RowProblem
from hub.core.errors import ValidationError

#: Content type assumed for each file suffix, per sector.
SUFFIXES = {
    "health": {
        ".json": "application/fhir+json",
        ".xml": "application/fhir+xml",
        ".ndjson": "application/fhir+ndjson",
    },
    "social_care": {".json": "application/json", ".csv": "text/csv", ".ndjson": "application/x-ndjson"},
    "education": {".json": "application/json", ".csv": "text/csv", ".ndjson": "application/x-ndjson"},
}
_ITERATORS: dict[str, Callable[..., Iterator[RecordResult]]] = {
    "health": health.iter_payload,
    "social_care": social_care.iter_payload,
    "education": education.iter_payload,
}


def _files(path: Path, sector: str) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES[sector])
    return [path]


def iter_file(path: str | Path, sector: str, mapping: Mapping | None = None) -> Iterator[RecordResult]:
    """Yield one :class:`RecordResult` per record of a file, or of every known file in a directory.

    A file that cannot be read at all yields a single result with ``row=None`` and its problems,
    and the walk continues with the next file. ``source`` names the file.
    """
    if sector not in _ITERATORS:
        raise ValueError(f"sector must be one of {', '.join(_ITERATORS)}")
    for file in _files(Path(path), sector):
        content_type = SUFFIXES[sector].get(file.suffix.lower())
        try:
            if content_type is None:
                accepted = ", ".join(SUFFIXES[sector])
                raise ValidationError(f"file type {file.suffix or '(none)'} is not read; use {accepted}")
            body = file.read_bytes()
            for result in _ITERATORS[sector](body, content_type, mapping):
                yield RecordResult(result.row, result.event, result.problems, str(file))
        except ValidationError as exc:
            problems = tuple(RowProblem(None, p.location, p.message) for p in exc.problems)
            yield RecordResult(None, None, problems, str(file))
        except OSError as exc:
            yield RecordResult(
                None, None, (RowProblem(None, "", f"cannot read file: {exc.strerror}"),), str(file)
            )
