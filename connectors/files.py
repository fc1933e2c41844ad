"""Read agency files for the CLI: single files, directories and NDJSON, one result per record.

Which files a sector reads, and how, is the sector registry's (:mod:`connectors.sectors`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from connectors.health.directory import ReferenceDirectory
from connectors.mapping import Mapping
from connectors.results import RecordResult
from connectors.sectors import SectorReader, reader
from hub.core.errors import Problem, ValidationError


def _refused(name: str, exc: Exception) -> RecordResult:
    """The one result of a file that cannot be read at all (the message names no content)."""
    if isinstance(exc, ValidationError):
        problems = tuple(Problem(p.location, p.message) for p in exc.problems)
    elif isinstance(exc, OSError):
        problems = (Problem("", f"cannot read file: {exc.strerror}"),)
    else:
        problems = (Problem("", f"cannot read file: {type(exc).__name__}"),)
    return RecordResult(None, None, problems, name)


#: what reading one file may raise; the import reports the file and goes on with the next
UNREADABLE = (ValidationError, OSError, ValueError, RecursionError)


def _sourced(name: str, results: Iterator[RecordResult]) -> Iterator[RecordResult]:
    try:
        for result in results:
            yield replace(result, source=name)
    except UNREADABLE as exc:
        yield _refused(name, exc)


def read_file(
    file: Path, sector: SectorReader, mapping: Mapping | None = None, directory: ReferenceDirectory | None = None
) -> tuple[Iterator[RecordResult], bool]:
    """The results of one file, each naming it as ``source``, and whether they are all-or-nothing.

    A file that cannot be read at all gives a single result with ``row=None`` and its problems.
    ``directory``: the sending agency's remembered FHIR resources (health only).
    """
    name = str(file)
    try:
        read = sector.read_file(file, mapping, directory)
    except UNREADABLE as exc:
        return iter([_refused(name, exc)]), False
    return _sourced(name, read.results), read.atomic


def iter_file(path: str | Path, sector: str, mapping: Mapping | None = None) -> Iterator[RecordResult]:
    """Yield one :class:`RecordResult` per record of a file, or of every known file in a directory.

    A file that cannot be read at all yields a single result with ``row=None`` and its problems,
    and the walk continues with the next file. ``source`` names the file.
    """
    sector_reader = reader(sector)
    for file in sector_reader.files(Path(path)):
        yield from read_file(file, sector_reader, mapping)[0]
