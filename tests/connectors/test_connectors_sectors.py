"""The sector registry: each sector's media types, file suffixes, default mapping and reading."""

from __future__ import annotations

from pathlib import Path

import pytest
from connector_helpers import FIXTURES

from connectors.mapping import SECTORS as MAPPING_SECTORS
from connectors.sectors import READERS, SECTORS, reader
from hub.core.errors import ValidationError

FHIR_TYPES = (
    "application/fhir+json",
    "application/json",
    "application/fhir+xml",
    "application/xml",
    "text/xml",
    "application/fhir+ndjson",
    "application/x-ndjson",
    "application/ndjson",
)
RECORD_SUFFIXES = {".json": "application/json", ".csv": "text/csv", ".ndjson": "application/x-ndjson"}
RECORD_TYPES = ("application/json", "text/csv", "application/x-ndjson", "application/ndjson", "application/jsonl")


def test_every_sector_has_one_reader() -> None:
    assert SECTORS == ("health", "social_care", "education") == MAPPING_SECTORS
    assert [r.name for r in READERS] == list(SECTORS)
    assert [reader(s).label for s in SECTORS] == ["health", "social-care", "education"]


@pytest.mark.parametrize(
    ("sector", "media_types", "suffixes"),
    [
        ("health", FHIR_TYPES,
         {".json": "application/fhir+json", ".xml": "application/fhir+xml", ".ndjson": "application/fhir+ndjson"}),
        ("social_care", RECORD_TYPES, RECORD_SUFFIXES),
        ("education", RECORD_TYPES, RECORD_SUFFIXES),
    ],
)
def test_media_types_and_suffixes(sector: str, media_types: tuple[str, ...], suffixes: dict[str, str]) -> None:
    r = reader(sector)
    assert r.media_types == media_types
    assert all(r.accepts(t) for t in media_types) and not r.accepts("text/plain")
    assert dict(r.suffixes) == suffixes
    for suffix, media in suffixes.items():
        assert r.media_type_of(Path(f"export{suffix.upper()}")) == media
    with pytest.raises(ValidationError, match=r"file type \.txt is not read; use " + ", ".join(suffixes)):
        r.media_type_of(Path("notes.txt"))
    assert r.default_mapping().sector == sector
    assert r.mapping(None) is None


def test_unknown_sector_is_refused_by_name() -> None:
    expected = "unknown sector 'police': sector must be one of health, social_care, education"
    with pytest.raises(ValueError, match=expected):
        reader("police")


def test_readers_read_payloads_and_files() -> None:
    health = reader("health").read_file(FIXTURES / "health" / "bundle-transaction-admission.json")
    assert health.atomic and any(r.event is not None for r in health.results)
    csv = reader("education").read_file(FIXTURES / "education" / "send-events.csv")
    rows = list(csv.results)
    assert not csv.atomic and sum(1 for r in rows if r.event is not None) == 6
    with pytest.raises(ValidationError, match="malformed JSON"):
        list(reader("social_care").read(b"{broken", "application/json").results)


def test_mapping_files_are_chosen_through_the_registry() -> None:
    source = FIXTURES.parents[2] / "connectors" / "mappings" / "education" / "mis-generic.json"
    chosen = reader("education").mapping(source)
    assert chosen is not None and chosen.ref == reader("education").default_mapping().ref
