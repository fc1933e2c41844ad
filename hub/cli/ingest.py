"""`hub ingest health|social-care|education PATH...`: import agency files (registered in hub/cli/main.py).

Files and directories are read by their sector's reader (:mod:`connectors.sectors`) and accepted in
chunks through the batch pipeline (:mod:`hub.ingest.batch`), with progress on stderr and a summary;
exit 0 if every row was good, 1 if some were rejected, 2 if it could not run (no broker, bad
settings, bad mapping file).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from connectors.mapping import Mapping
from connectors.sectors import SectorReader, reader
from hub.cli.common import console, fail, load_settings, out, run
from hub.core.errors import HubError
from hub.core.settings import Settings, running_bootstrap
from hub.ingest.batch import DEFAULT_CHUNK, Summary, import_files
from hub.ingest.services import Services

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
AgencyOpt = Annotated[
    str | None,
    typer.Option(
        "--agency",
        help="Whose FHIR references the files resolve and add to (as the agency's token subject on the API); "
        "default: the mapping's source system.",
    ),
]
ChunkOpt = Annotated[int, typer.Option("--chunk", min=1, max=5000, help="Records per acceptance batch.")]


def _mapping(sector: SectorReader, mapping_file: Path | None) -> Mapping | None:
    """The mapping chosen with --mapping (None: the sector's default); a bad file ends the command."""
    try:
        return sector.mapping(mapping_file)
    except (HubError, OSError, ValueError) as exc:
        message = str(exc).splitlines()[0]
        fail(message if message.startswith("mapping ") else f"mapping {mapping_file}: {message}")


def _with_broker(settings: Settings) -> Settings:
    """The settings, pointed at the running hub's broker unless HUB_KAFKA_BOOTSTRAP names one."""
    if settings.kafka_bootstrap:
        return settings
    bootstrap = running_bootstrap(settings)
    if not bootstrap:
        fail("no broker is running: start the hub with `hub up` (or `hub demo --serve`), or set HUB_KAFKA_BOOTSTRAP")
    return settings.model_copy(update={"kafka_bootstrap": bootstrap, "kafka_embedded": True})


async def _import(settings: Settings, sector: SectorReader, paths: Sequence[Path], mapping: Mapping | None,
                  chunk: int, agency: str | None = None) -> Summary:
    files = sum(len(sector.files(p)) for p in paths)
    services = Services.build(settings, migrate_schema=settings.owns_database)
    try:
        await services.start()
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[rows]}"),
                      TimeElapsedColumn(), console=console, transient=True) as progress:
            task = progress.add_task(f"importing {sector.label}", total=None, rows="0 rows")
            seen = 0

            def on_chunk(done: Summary) -> None:
                nonlocal seen
                seen += len(done.results) + done.rejected + done.ignored
                progress.update(task, rows=f"{seen} rows from {files} file(s)")

            return await import_files(services, sector.name, paths, mapping=mapping, chunk=chunk, on_chunk=on_chunk,
                                      agency=agency)
    finally:
        await services.stop()
        services.store.engine.dispose()


def run_import(sector_name: str, paths: Sequence[Path], mapping_file: Path | None, chunk: int = DEFAULT_CHUNK,
               agency: str | None = None) -> int:
    """The `hub ingest` commands: returns the exit code (0 all good, 1 some rows rejected)."""
    sector = reader(sector_name)
    os.environ.setdefault("HUB_LOG_LEVEL", "WARNING")  # the summary is for people; keep logs quiet
    settings = load_settings()
    mapping = _mapping(sector, mapping_file)
    settings = _with_broker(settings)
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        fail(f"no such file or directory: {', '.join(missing)}")
    if agency is None and sector_name == "health":
        agency = (mapping or sector.default_mapping()).source_system
    summary = run(_import(settings, sector, paths, mapping, chunk, agency))
    for problem in summary.problems:
        console.print(f"[red]rejected[/] {escape(str(problem))}", highlight=False, soft_wrap=True)
    out.print(
        f"{sector.label}: {summary.accepted} accepted, {summary.duplicates} duplicates, "
        f"{summary.rejected} rejected, {summary.ignored} context-only",
        highlight=False,
    )
    return 1 if summary.rejected else 0


@ingest_app.command("health")
def ingest_health(paths: PathsArg, mapping: MappingOpt = None, chunk: ChunkOpt = DEFAULT_CHUNK,
                  agency: AgencyOpt = None) -> None:
    """FHIR R4 / UK Core resources: .json (resources, Bundles), .xml, .ndjson; directories are walked.
    Patients and services are remembered for later files' references (per --agency)."""
    raise typer.Exit(run_import("health", paths, mapping, chunk, agency))


@ingest_app.command("social-care")
def ingest_social_care(paths: PathsArg, mapping: MappingOpt = None, chunk: ChunkOpt = DEFAULT_CHUNK) -> None:
    """Local-authority events: .json (object or array), .ndjson, .csv."""
    raise typer.Exit(run_import("social_care", paths, mapping, chunk))


@ingest_app.command("education")
def ingest_education(paths: PathsArg, mapping: MappingOpt = None, chunk: ChunkOpt = DEFAULT_CHUNK) -> None:
    """School MIS / SEND events: .json (object or array), .ndjson, .csv."""
    raise typer.Exit(run_import("education", paths, mapping, chunk))
