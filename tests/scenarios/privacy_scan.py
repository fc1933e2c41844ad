"""Looking for people's personal data in clear where the hub keeps or sends things.

:class:`Known` is what the demo's journeys say about their people (names of the children and their
parents, dates of birth, NHS numbers, UPNs), taken from :mod:`hub.demo`, each in the forms it could take
in clear (a date as ISO and dd/mm/yyyy, an NHS number with and without spaces). The scans read every
text, string, date, JSON and binary column of every table (reflected from the database, so a new table
is scanned without being listed here), log lines and broker records, and report *where* a value was
found and *what kind* of value it was, never the value itself.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from hub.demo.identifiers import nhs_number
from hub.demo.scenario import Journey

NAME, DATE_OF_BIRTH, NHS_NUMBER, UPN = "name", "date of birth", "NHS number", "UPN"
#: column types read by the database scan (reflected type names, SQLite and PostgreSQL)
SCANNED_TYPES = ("CHAR", "TEXT", "CLOB", "DATE", "JSON", "BLOB", "BYTEA", "BINARY")
#: the demo's report families ("household-morgan-20261206083012"): the stamp gives the seed of their NHS number
_REPORT_FAMILY = re.compile(r"household-(morgan|rhys)-(\d{14})")
_REPORT_SEEDS = {"morgan": 301, "rhys": 401}


@dataclass
class Known:
    """Personal values of the demo's people, as regular expressions by kind."""

    patterns: dict[str, list[re.Pattern[bytes]]] = field(default_factory=dict)

    def add(self, kind: str, *forms: str) -> None:
        for form in forms:
            # a whole word (or number): "Cian" is not found inside "physician", nor 999… inside a longer number
            pattern = re.compile(rb"(?<![\w])" + re.escape(form.encode()) + rb"(?![\w])")
            self.patterns.setdefault(kind, []).append(pattern)

    def add_name(self, name: str) -> None:
        given, *_ = name.split()
        self.add(NAME, name, given)

    def add_birth_date(self, born: date) -> None:
        self.add(DATE_OF_BIRTH, born.isoformat(), born.strftime("%d/%m/%Y"))

    def add_nhs_number(self, value: str) -> None:
        self.add(NHS_NUMBER, value, f"{value[:3]} {value[3:6]} {value[6:]}")

    def kinds_in(self, data: bytes) -> set[str]:
        return {kind for kind, patterns in self.patterns.items() if any(p.search(data) for p in patterns)}


def known_people(journey: Journey, household_ids: Iterable[str] = ()) -> Known:
    """The demo's people (:func:`hub.demo.scenario.build`), and the NHS numbers of its report families
    (each numbered from the run stamp in its household id, as :mod:`hub.demo.report_journey` does)."""
    known = Known()
    for person in journey.people:
        known.add_name(person.name)
        for parent in person.parents:
            known.add_name(parent)
        if person.born is not None:
            known.add_birth_date(person.born)
        for ident in person.identifiers:
            if ident.system == "nhs-number":
                known.add_nhs_number(ident.value)
            elif ident.system == "upn":
                known.add(UPN, ident.value)
    for household in household_ids:
        if m := _REPORT_FAMILY.fullmatch(household):
            stamp = datetime.strptime(m.group(2) + "+0000", "%Y%m%d%H%M%S%z")
            known.add_nhs_number(nhs_number(_REPORT_SEEDS[m.group(1)] + int(stamp.timestamp()) % 500_000))
    return known


@dataclass
class Findings:
    """Where personal values were found: place (``table.column``, ``topic <name> value`` or ``log``) →
    kinds of value → how many rows, records or lines."""

    places: dict[str, Counter[str]] = field(default_factory=dict)
    scanned: Counter[str] = field(default_factory=Counter)  # what was read, by scan

    def note(self, place: str, kinds: set[str]) -> None:
        for kind in kinds:
            self.places.setdefault(place, Counter())[kind] += 1

    def report(self) -> list[str]:
        return [f"{place}: " + ", ".join(f"{kind} ({n})" for kind, n in sorted(kinds.items()))
                for place, kinds in sorted(self.places.items())]


def _as_bytes(value: object) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, date):  # a DATE column hands back a date: look for its written forms too
        return f"{value.isoformat()} {value.strftime('%d/%m/%Y')}".encode()
    return str(value).encode()


def scan_database(engine: Engine, known: Known, findings: Findings) -> None:
    """Every text, string, date, JSON and binary column of every table the database holds."""
    meta = sa.MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            columns = [c for c in table.columns if any(t in str(c.type).upper() for t in SCANNED_TYPES)]
            if not columns:
                continue
            findings.scanned["tables"] += 1
            for row in conn.execute(sa.select(*columns)):
                findings.scanned["rows"] += 1
                for column, value in zip(columns, row, strict=True):
                    if value is not None:
                        findings.note(f"{table.name}.{column.name}", known.kinds_in(_as_bytes(value)))


def scan_lines(place: str, lines: Iterable[str], known: Known, findings: Findings) -> None:
    for line in lines:
        findings.scanned[place] += 1
        findings.note(place, known.kinds_in(line.encode()))


def scan_record(topic: str, key: bytes | None, value: bytes | None, headers: Iterable[tuple[str, bytes]],
                known: Known, findings: Findings) -> None:
    findings.scanned["records"] += 1
    findings.note(f"topic {topic} key", known.kinds_in(key or b""))
    findings.note(f"topic {topic} value", known.kinds_in(value or b""))
    findings.note(f"topic {topic} headers", known.kinds_in(b"\n".join(k.encode() + b"=" + v for k, v in headers)))
