"""Batch acceptance of connector output, shared by the HTTP ingest routes and `hub ingest` file imports.

A batch is a list of :class:`connectors.results.RecordResult` (one per CSV/NDJSON line, JSON array
item or Bundle entry). Rows the connector refused, and rows whose event does not fit its Avro schema
(:meth:`hub.ingest.IngestService.prepare`), are rejected with their reason; every other row is
accepted through the one acceptance contract (:meth:`~hub.ingest.IngestService.accept_prepared`:
dedupe on source keys, durable log, publish with acks=all). Nothing valid in a batch is lost, unless
the batch is atomic (a single resource or a FHIR ``transaction`` Bundle): then one bad row refuses all.

`hub ingest health|social-care|education PATH...` reads files and directories through the same code
in chunks, shows progress on stderr and prints a summary; exit 0 if every row was good, 1 if some
were rejected, 2 if it could not run (no broker, bad settings, bad mapping file).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hub.core.errors import HubError, Problem, ValidationError
from hub.core.privacy import scrub

if TYPE_CHECKING:
    from connectors.mapping import Mapping
    from connectors.results import RecordResult
    from hub.ingest.service import IngestService, Prepared
    from hub.ingest.services import Services

SECTORS = ("health", "social_care", "education")
DEFAULT_CHUNK = 500
ATOMIC_REFUSAL = "not accepted: the batch is all-or-nothing and other rows were refused"


@dataclass(frozen=True)
class RowResult:
    row: int | None
    event_id: str
    status: str  # "accepted" | "duplicate"
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


@dataclass(frozen=True)
class RowError:
    row: int | None
    location: str
    detail: str
    source: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"row": self.row, "location": self.location, "detail": self.detail}
        if self.source is not None:
            out["file"] = self.source
        return out

    def __str__(self) -> str:
        where = self.source or ""
        if self.row is not None:
            where = f"{where}:{self.row}" if where else f"row {self.row}"
        where = where or "payload"
        return f"{where}: {self.location}: {self.detail}" if self.location else f"{where}: {self.detail}"


@dataclass
class Summary:
    """What happened to a batch (or to a whole file import)."""

    results: list[RowResult] = field(default_factory=list)
    problems: list[RowError] = field(default_factory=list)
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
        """200 all good, 207 some rows rejected but others accepted, 422 nothing acceptable."""
        if not self.rejected:
            return 200
        return 207 if self.results else 422

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


def prepare_batch(
    ingest: IngestService, results: Iterable[RecordResult], *, atomic: bool = False
) -> PreparedBatch:
    """Split connector results into prepared events and rejected rows (CPU only: no I/O)."""
    batch = PreparedBatch()
    summary = batch.summary
    bad_rows: set[tuple[str | None, int | None]] = set()
    mapped: list[RecordResult] = []
    for result in results:
        if result.problems:
            bad_rows.add((result.source, result.row))
            summary.problems += [
                RowError(
                    p.row if p.row is not None else result.row, p.location, scrub(p.message), result.source
                )
                for p in result.problems
            ]
        elif result.event is None:
            summary.ignored += 1
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
                RowError(result.row, "", scrub(p.message), result.source) for p in reasons.get(index, [])
            ]
        else:
            batch.ready.append((result.row, result.source, prep))
    if atomic and bad_rows and batch.ready:
        for row, source, _ in batch.ready:
            bad_rows.add((source, row))
            summary.problems.append(RowError(row, "", ATOMIC_REFUSAL, source))
        batch.ready = []
    summary.rejected = len(bad_rows)
    return batch


async def accept_batch(ingest: IngestService, batch: PreparedBatch) -> Summary:
    """Accept the prepared rows (duplicates answered with their event ids); return the batch summary."""
    summary = batch.summary
    if batch.ready:
        acceptances = await ingest.accept_prepared([p for _, _, p in batch.ready])
        summary.results += [
            RowResult(row, a.event_id, a.status, a.topic, a.source_version, source)
            for (row, source, _), a in zip(batch.ready, acceptances, strict=True)
        ]
    return summary


async def accept_results(
    ingest: IngestService, results: Iterable[RecordResult], *, atomic: bool = False
) -> Summary:
    return await accept_batch(ingest, prepare_batch(ingest, results, atomic=atomic))


# --- files ------------------------------------------------------------------------------------


def _files(path: Path, sector: str) -> list[Path]:
    from connectors.files import SUFFIXES

    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES[sector])
    return [path]


def _file_results(file: Path, sector: str, mapping: Mapping | None) -> tuple[Iterator[RecordResult], bool]:
    """Results of one file and whether they are all-or-nothing (a FHIR transaction Bundle)."""
    from connectors import education, health, social_care
    from connectors.files import SUFFIXES
    from connectors.health import fhir

    content_type = SUFFIXES[sector].get(file.suffix.lower())
    if content_type is None:
        raise ValidationError(
            f"file type {file.suffix or '(none)'} is not read; use {', '.join(SUFFIXES[sector])}"
        )
    body = file.read_bytes()
    if sector == "health":
        decoded = fhir.decode(body, content_type)
        return health.results(decoded, mapping), decoded.atomic
    module = social_care if sector == "social_care" else education
    return module.iter_payload(body, content_type, mapping), False


def iter_file_results(
    paths: Sequence[str | Path], sector: str, mapping: Mapping | None = None
) -> Iterator[tuple[list[RecordResult], bool]]:
    """(results, atomic) groups: one per file for atomic files, else runs of up to 500 records."""
    from connectors.results import RecordResult, RowProblem

    if sector not in SECTORS:
        raise ValueError(f"sector must be one of {', '.join(SECTORS)}")
    for path in paths:
        for file in _files(Path(path), sector):
            name = str(file)
            try:
                results, atomic = _file_results(file, sector, mapping)
                group: list[RecordResult] = []
                for r in results:
                    group.append(RecordResult(r.row, r.event, r.problems, name))
                    if not atomic and len(group) >= DEFAULT_CHUNK:
                        yield group, False
                        group = []
                if group:
                    yield group, atomic
            except ValidationError as exc:
                yield (
                    [
                        RecordResult(
                            None,
                            None,
                            tuple(RowProblem(None, p.location, p.message) for p in exc.problems),
                            name,
                        )
                    ],
                    False,
                )
            except OSError as exc:
                yield (
                    [
                        RecordResult(
                            None, None, (RowProblem(None, "", f"cannot read file: {exc.strerror}"),), name
                        )
                    ],
                    False,
                )


async def import_files(
    services: Services,
    sector: str,
    paths: Sequence[str | Path],
    *,
    mapping: Mapping | None = None,
    chunk: int = DEFAULT_CHUNK,
    on_chunk: Callable[[Summary], None] | None = None,
) -> Summary:
    """Import agency files through the acceptance contract in chunks of about ``chunk`` records.

    Bad rows are reported with their file and line (or Bundle entry); good rows are imported.
    ``on_chunk`` is called with each chunk's summary (for progress display).
    """
    total = Summary()
    pending: list[RecordResult] = []

    async def flush(results: list[RecordResult], atomic: bool) -> None:
        if not results:
            return
        batch = await asyncio.to_thread(prepare_batch, services.ingest, results, atomic=atomic)
        done = await accept_batch(services.ingest, batch)
        total.merge(done)
        if on_chunk is not None:
            on_chunk(done)

    for group, atomic in iter_file_results(paths, sector, mapping):
        if atomic:
            await flush(group, True)
            continue
        pending += group
        if len(pending) >= chunk:
            await flush(pending, False)
            pending = []
    await flush(pending, False)
    return total


# --- `hub ingest` -------------------------------------------------------------------------------

ingest_app = typer.Typer(
    help="Import agency files (FHIR, social-care and education exports) into the hub.", no_args_is_help=True
)
PathsArg = Annotated[list[Path], typer.Argument(help="Files or directories.", show_default=False)]
MappingOpt = Annotated[
    Path | None,
    typer.Option(
        "--mapping",
        help="A mapping file to use instead of the built-in one (see connectors/mappings/README.md).",
    ),
]
ChunkOpt = Annotated[int, typer.Option("--chunk", min=1, max=5000, help="Records per acceptance batch.")]


def _fail(message: str, code: int = 2) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def run_import(
    sector: str, paths: Sequence[Path], mapping_file: Path | None, chunk: int = DEFAULT_CHUNK
) -> int:
    """The `hub ingest` commands: returns the exit code (0 all good, 1 some rows rejected)."""
    import os

    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from hub.core.logging import configure_logging
    from hub.core.settings import Settings, running_bootstrap
    from hub.ingest.services import Services

    os.environ.setdefault("HUB_LOG_LEVEL", "WARNING")  # the summary is for people; keep logs quiet
    try:
        settings = Settings()
    except Exception as exc:
        _fail(f"invalid settings: {exc}".replace("\n", " "))
    configure_logging(settings.log_level, settings.log_format)
    mapping = None
    if mapping_file is not None:
        from connectors.mapping import load_mapping

        try:
            mapping = load_mapping(mapping_file)
        except (HubError, OSError, ValueError) as exc:
            message = str(exc).splitlines()[0]
            _fail(message if message.startswith("mapping ") else f"mapping {mapping_file}: {message}")
    bootstrap = settings.kafka_bootstrap
    if not bootstrap:
        bootstrap = running_bootstrap(settings)
        if not bootstrap:
            _fail(
                "no broker is running: start the hub with `hub up` (or `hub demo --serve`), "
                "or set HUB_KAFKA_BOOTSTRAP"
            )
        settings = settings.model_copy(update={"kafka_bootstrap": bootstrap, "kafka_embedded": True})
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        _fail(f"no such file or directory: {', '.join(missing)}")
    files = sum(len(_files(p, sector)) for p in paths)
    err = Console(stderr=True)
    out = Console()

    async def main() -> Summary:
        services = Services.build(settings)
        try:
            await services.start()
            with Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[rows]}"),
                TimeElapsedColumn(),
                console=err,
                transient=True,
            ) as progress:
                task = progress.add_task(f"importing {sector.replace('_', '-')}", total=None, rows="0 rows")
                seen = 0

                def on_chunk(done: Summary) -> None:
                    nonlocal seen
                    seen += len(done.results) + done.rejected + done.ignored
                    progress.update(task, rows=f"{seen} rows from {files} file(s)")

                return await import_files(
                    services, sector, paths, mapping=mapping, chunk=chunk, on_chunk=on_chunk
                )
        finally:
            await services.stop()
            services.store.engine.dispose()

    try:
        summary = asyncio.run(main())
    except HubError as exc:
        _fail(str(exc).splitlines()[0])
        raise  # unreachable: _fail exits
    for problem in summary.problems:
        err.print(f"[red]rejected[/] {escape(str(problem))}", highlight=False, soft_wrap=True)
    out.print(
        f"{sector.replace('_', '-')}: {summary.accepted} accepted, {summary.duplicates} duplicates, "
        f"{summary.rejected} rejected, {summary.ignored} context-only",
        highlight=False,
    )
    return 1 if summary.rejected else 0


@ingest_app.command("health")
def ingest_health(paths: PathsArg, mapping: MappingOpt = None, chunk: ChunkOpt = DEFAULT_CHUNK) -> None:
    """FHIR R4 / UK Core resources: .json (resources, Bundles), .xml, .ndjson; directories are walked."""
    raise typer.Exit(run_import("health", paths, mapping, chunk))


@ingest_app.command("social-care")
def ingest_social_care(paths: PathsArg, mapping: MappingOpt = None, chunk: ChunkOpt = DEFAULT_CHUNK) -> None:
    """Local-authority events: .json (object or array), .ndjson, .csv."""
    raise typer.Exit(run_import("social_care", paths, mapping, chunk))


@ingest_app.command("education")
def ingest_education(paths: PathsArg, mapping: MappingOpt = None, chunk: ChunkOpt = DEFAULT_CHUNK) -> None:
    """School MIS / SEND events: .json (object or array), .ndjson, .csv."""
    raise typer.Exit(run_import("education", paths, mapping, chunk))
