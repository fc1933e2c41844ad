"""Batch acceptance of connector output, shared by the HTTP ingest routes and `hub ingest` file imports.

A batch is a list of :class:`connectors.results.RecordResult` (one per CSV/NDJSON line, JSON array
item or Bundle entry). Rows the connector refused, and rows whose event does not fit its Avro schema
(:meth:`hub.ingest.IngestService.prepare`), are rejected with their reason; every other row is
accepted through the one acceptance contract (:meth:`~hub.ingest.IngestService.accept_prepared`:
dedupe on source keys, durable log, publish with acks=all). Nothing valid in a batch is lost, unless
the batch is atomic (a single resource or a FHIR ``transaction`` Bundle): then one bad row refuses all.
FHIR context resources (Patient, Practitioner, Organization…) the connector hands back are kept in
the sending agency's reference directory (:mod:`hub.ingest.references`) once the batch is accepted,
and not at all when an atomic batch is refused.

:func:`import_files` reads files and directories (``hub ingest``, hub/cli/ingest.py) through the same
code in chunks, each file read by its sector's reader (:mod:`connectors.sectors`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connectors.files import read_file
from connectors.health.directory import ReferenceDirectory
from connectors.mapping import Mapping
from connectors.results import RecordResult, Remembered
from connectors.sectors import reader
from hub.core.errors import Problem
from hub.core.privacy import scrub
from hub.ingest.references import SqlReferenceDirectory
from hub.ingest.service import conflict_message, refused_message

if TYPE_CHECKING:
    from hub.ingest.service import IngestService, Prepared
    from hub.ingest.services import Services

DEFAULT_CHUNK = 500
ATOMIC_REFUSAL = "not accepted: the batch is all-or-nothing and other rows were refused"


@dataclass(frozen=True)
class RowResult:
    row: int | None
    event_id: str
    status: str  # "accepted" | "duplicate" | "stale"
    topic: str
    source_version: int = 1
    source: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "row": self.row,
            "event_id": self.event_id,
            "status": self.status,
            "topic": self.topic,
            "version": self.source_version,
        }
        if self.source is not None:
            out["file"] = self.source
        return out


@dataclass
class Summary:
    """What happened to a batch (or to a whole file import)."""

    results: list[RowResult] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # each with its row and file
    rejected: int = 0
    ignored: int = 0  # context-only records (a Patient, a MessageHeader) that emit nothing

    @property
    def accepted(self) -> int:
        return sum(1 for r in self.results if r.status == "accepted")

    @property
    def duplicates(self) -> int:
        return sum(1 for r in self.results if r.status == "duplicate")

    def merge(self, other: Summary) -> None:
        self.results += other.results
        self.problems += other.problems
        self.rejected += other.rejected
        self.ignored += other.ignored

    @property
    def status_code(self) -> int:
        """200 all good, 207 some rows rejected but others accepted, 422 nothing acceptable (413 when
        every refusal was a record too large, 409 when every one was a conflicting resend)."""
        if not self.rejected:
            return 200
        if self.results:
            return 207
        statuses = {p.status or 422 for p in self.problems}
        return statuses.pop() if len(statuses) == 1 else 422

    def as_json(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "ignored": self.ignored,
            "results": [r.as_json() for r in self.results],
            "problems": [p.as_json() for p in self.problems],
        }


@dataclass
class PreparedBatch:
    """A batch after parsing and Avro preparation, before acceptance."""

    ready: list[tuple[int | None, str | None, Prepared]] = field(default_factory=list)
    summary: Summary = field(default_factory=Summary)
    directory: SqlReferenceDirectory | None = None
    remember: list[Remembered] = field(default_factory=list)


def prepare_batch(
    ingest: IngestService,
    results: Iterable[RecordResult],
    *,
    atomic: bool = False,
    directory: SqlReferenceDirectory | None = None,
) -> PreparedBatch:
    """Split connector results into prepared events and rejected rows (no I/O but the connector's
    reference look-ups in ``directory``)."""
    batch = PreparedBatch(directory=directory)
    summary = batch.summary
    bad_rows: set[tuple[str | None, int | None]] = set()
    mapped: list[RecordResult] = []
    for result in results:
        if result.problems:
            bad_rows.add((result.source, result.row))
            summary.problems += [
                Problem(p.location, scrub(p.message), p.row if p.row is not None else result.row, result.source)
                for p in result.problems
            ]
        elif result.event is None:
            summary.ignored += 1
            if result.remember is not None:
                batch.remember.append(result.remember)
        else:
            mapped.append(result)
    prepared, problems = ingest.prepare([r.event for r in mapped if r.event is not None])
    reasons: dict[int, list[Problem]] = {}
    for p in problems:  # located "[i]" by prepare
        index = int(p.location.strip("[]").split("]", 1)[0])
        reasons.setdefault(index, []).append(p)
    for index, (result, prep) in enumerate(zip(mapped, prepared, strict=True)):
        if prep is None:
            bad_rows.add((result.source, result.row))
            summary.problems += [
                Problem("", scrub(p.message), result.row, result.source, p.status) for p in reasons.get(index, [])
            ]
        else:
            batch.ready.append((result.row, result.source, prep))
    if atomic and bad_rows:
        batch.remember = []
    if atomic and bad_rows and batch.ready:
        for row, source, _ in batch.ready:
            bad_rows.add((source, row))
            summary.problems.append(Problem("", ATOMIC_REFUSAL, row, source))
        batch.ready = []
    summary.rejected = len(bad_rows)
    return batch


async def accept_batch(ingest: IngestService, batch: PreparedBatch) -> Summary:
    """Accept the prepared rows (duplicates answered with their event ids); return the batch summary."""
    summary = batch.summary
    if batch.ready:
        acceptances = await ingest.accept_prepared([p for _, _, p in batch.ready])
        for (row, source, _), a in zip(batch.ready, acceptances, strict=True):
            if a.status == "conflict":
                summary.problems.append(Problem("", conflict_message(a.event_id, a.source_version), row, source, 409))
            elif a.status == "refused":
                summary.problems.append(Problem("", refused_message(a.event_id), row, source, 413))
            else:
                summary.results.append(RowResult(row, a.event_id, a.status, a.topic, a.source_version, source))
                continue
            summary.rejected += 1
    if batch.directory is not None and batch.remember:
        await asyncio.to_thread(batch.directory.remember_all, batch.remember)
    return summary


async def accept_results(
    ingest: IngestService,
    results: Iterable[RecordResult],
    *,
    atomic: bool = False,
    directory: SqlReferenceDirectory | None = None,
) -> Summary:
    return await accept_batch(ingest, prepare_batch(ingest, results, atomic=atomic, directory=directory))


# --- files ------------------------------------------------------------------------------------


def iter_file_results(
    paths: Sequence[str | Path],
    sector: str,
    mapping: Mapping | None = None,
    directory: ReferenceDirectory | None = None,
) -> Iterator[tuple[list[RecordResult], bool]]:
    """(results, atomic) groups: one per file for atomic files, else runs of up to 500 records."""
    sector_reader = reader(sector)
    for path in paths:
        for file in sector_reader.files(Path(path)):
            results, atomic = read_file(file, sector_reader, mapping, directory)
            group: list[RecordResult] = []
            for r in results:
                group.append(r)
                if not atomic and len(group) >= DEFAULT_CHUNK:
                    yield group, False
                    group = []
            if group:
                yield group, atomic


async def import_files(
    services: Services,
    sector: str,
    paths: Sequence[str | Path],
    *,
    mapping: Mapping | None = None,
    chunk: int = DEFAULT_CHUNK,
    on_chunk: Callable[[Summary], None] | None = None,
    agency: str | None = None,
) -> Summary:
    """Import agency files through the acceptance contract in chunks of about ``chunk`` records.

    Bad rows are reported with their file and line (or Bundle entry); good rows are imported.
    ``on_chunk`` is called with each chunk's summary (for progress display). ``agency``: whose FHIR
    references the files resolve and add to (:mod:`hub.ingest.references`); none when None.
    """
    directory = None if agency is None else SqlReferenceDirectory(services.store, services.pseudonymise, agency)
    total = Summary()
    pending: list[RecordResult] = []

    async def flush(results: list[RecordResult], atomic: bool) -> None:
        if not results:
            return
        batch = await asyncio.to_thread(prepare_batch, services.ingest, results, atomic=atomic, directory=directory)
        done = await accept_batch(services.ingest, batch)
        total.merge(done)
        if on_chunk is not None:
            on_chunk(done)

    for group, atomic in iter_file_results(paths, sector, mapping, directory):
        if atomic:
            await flush(group, True)
            continue
        pending += group
        if len(pending) >= chunk:
            await flush(pending, False)
            pending = []
    await flush(pending, False)
    return total
