"""The sector registry: which reader turns a sector's payloads and files into records.

Each sector has one :class:`SectorReader`: the media types its HTTP route accepts (in the order
clients are told them), the file suffixes ``hub ingest`` reads (and the media type each stands for),
its default mapping, and :meth:`SectorReader.read`. Health reads FHIR R4 JSON, XML and NDJSON;
social care and education read JSON, NDJSON and CSV through their mapping files. The HTTP routes,
``hub ingest`` and :func:`connectors.files.iter_file` all dispatch through :func:`reader`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from connectors import education, formats, health, social_care
from connectors.health import fhir
from connectors.health.directory import ReferenceDirectory
from connectors.mapping import Mapping, load_mapping
from connectors.records import SectorConnector
from connectors.results import RecordResult
from hub.core.errors import ValidationError

JSON_CSV_SUFFIXES = ((".json", "application/json"), (".csv", "text/csv"), (".ndjson", "application/x-ndjson"))


@dataclass(frozen=True)
class Read:
    """The records of one payload, and whether they are all-or-nothing (a FHIR transaction Bundle)."""

    results: Iterator[RecordResult]
    atomic: bool = False


class SectorReader(ABC):
    """Reads one sector's payloads (bytes and a media type) and files (by suffix)."""

    name: str
    media_types: tuple[str, ...]
    suffixes: tuple[tuple[str, str], ...]  # (suffix, media type)

    @property
    def label(self) -> str:
        """The sector as people and URLs spell it (``social-care``)."""
        return self.name.replace("_", "-")

    @abstractmethod
    def default_mapping(self) -> Mapping:
        """The built-in mapping used when none is given."""

    @abstractmethod
    def read(
        self,
        body: bytes | str,
        media_type: str,
        mapping: Mapping | None = None,
        directory: ReferenceDirectory | None = None,
    ) -> Read:
        """The records of a payload; raise :class:`ValidationError` if it cannot be read at all
        (possibly only once the results are iterated). ``directory``: the sending agency's
        remembered FHIR resources (only the health reader uses it)."""

    def accepts(self, media_type: str) -> bool:
        return media_type in self.media_types

    def mapping(self, path: Path | None) -> Mapping | None:
        """The mapping file at ``path`` (checked as it loads), or None for the default mapping."""
        return None if path is None else load_mapping(path)

    def media_type_of(self, file: Path) -> str:
        """The media type a file's suffix stands for; :class:`ValidationError` for a suffix not read."""
        by_suffix = dict(self.suffixes)
        media = by_suffix.get(file.suffix.lower())
        if media is None:
            raise ValidationError(f"file type {file.suffix or '(none)'} is not read; use {', '.join(by_suffix)}")
        return media

    def files(self, path: Path) -> list[Path]:
        """``path`` itself, or for a directory every file below it with a suffix this sector reads."""
        if path.is_dir():
            known = {suffix for suffix, _ in self.suffixes}
            return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in known)
        return [path]

    def read_file(
        self, file: Path, mapping: Mapping | None = None, directory: ReferenceDirectory | None = None
    ) -> Read:
        media = self.media_type_of(file)
        return self.read(file.read_bytes(), media, mapping, directory)


class FhirReader(SectorReader):
    """Health: FHIR R4 / UK Core resources and Bundles as JSON, XML or NDJSON."""

    name = health.SECTOR
    media_types = (
        "application/fhir+json",
        "application/json",
        "application/fhir+xml",
        "application/xml",
        "text/xml",
        "application/fhir+ndjson",
        "application/x-ndjson",
        "application/ndjson",
    )
    suffixes = ((".json", "application/fhir+json"), (".xml", "application/fhir+xml"),
                (".ndjson", "application/fhir+ndjson"))

    def default_mapping(self) -> Mapping:
        return health.default_mapping()

    def read(
        self,
        body: bytes | str,
        media_type: str,
        mapping: Mapping | None = None,
        directory: ReferenceDirectory | None = None,
    ) -> Read:
        decoded = fhir.decode(body, media_type)
        return Read(health.results(decoded, mapping, directory=directory), decoded.atomic)


class RecordReader(SectorReader):
    """A JSON / NDJSON / CSV event feed read through a sector's mapping files."""

    media_types = formats.JSON + formats.CSV + formats.NDJSON
    suffixes = JSON_CSV_SUFFIXES

    def __init__(self, connector: SectorConnector) -> None:
        self.connector = connector
        self.name = connector.sector

    def default_mapping(self) -> Mapping:
        return self.connector.default_mapping()

    def read(
        self,
        body: bytes | str,
        media_type: str,
        mapping: Mapping | None = None,
        directory: ReferenceDirectory | None = None,
    ) -> Read:
        return Read(self.connector.iter_payload(body, media_type, mapping))


READERS: tuple[SectorReader, ...] = (
    FhirReader(),
    RecordReader(social_care.connector),
    RecordReader(education.connector),
)
SECTORS: tuple[str, ...] = tuple(r.name for r in READERS)


def reader(sector: str) -> SectorReader:
    """The reader of a sector (``health``, ``social_care``, ``education``); ValueError for any other."""
    for candidate in READERS:
        if candidate.name == sector:
            return candidate
    raise ValueError(f"unknown sector {sector!r}: sector must be one of {', '.join(SECTORS)}")
