"""What parsing returns: events, and problems tied to a row, line or Bundle entry."""

from __future__ import annotations

from dataclasses import dataclass, field

from hub.core.errors import Problem
from hub.core.events import InboundEvent


@dataclass(frozen=True)
class RowProblem:
    """A problem with one record of a batch.

    ``row`` is the CSV/NDJSON line number (the CSV header is line 1), the JSON array index or the
    Bundle entry index; ``None`` for a problem with the payload as a whole.
    """

    row: int | None
    location: str
    message: str

    def __str__(self) -> str:
        where = f"row {self.row}" if self.row is not None else "payload"
        return f"{where}: {self.location}: {self.message}" if self.location else f"{where}: {self.message}"

    def as_problem(self) -> Problem:
        location = self.location if self.row is None else f"[{self.row}]{self.location}"
        return Problem(location, self.message)


@dataclass(frozen=True)
class RecordResult:
    """The outcome of one record: an event, nothing (a context-only record such as a Patient), or problems."""

    row: int | None
    event: InboundEvent | None = None
    problems: tuple[RowProblem, ...] = ()
    source: str | None = None  # the file it came from, for iter_file

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class ParseResult:
    """Events parsed from a payload and problems with the records that were refused."""

    events: list[InboundEvent] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)

    def add(self, result: RecordResult) -> None:
        if result.event is not None:
            self.events.append(result.event)
        self.problems.extend(result.problems)


def problems_to_rows(row: int | None, problems: list[Problem]) -> tuple[RowProblem, ...]:
    return tuple(RowProblem(row, p.location, p.message) for p in problems)
