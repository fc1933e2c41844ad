"""What parsing returns: events, and problems (:class:`hub.core.errors.Problem`) tied to a row, line or
Bundle entry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hub.core.errors import Problem
from hub.core.events import InboundEvent


@dataclass(frozen=True)
class Remembered:
    """A context resource (a FHIR Patient, Practitioner, Organization…) the hub keeps for later
    references once its payload is accepted (:mod:`connectors.health.directory`)."""

    resource_type: str
    resource_id: str
    summary: dict[str, Any]
    version: int = 1


@dataclass(frozen=True)
class RecordResult:
    """The outcome of one record: an event, nothing (a context-only record such as a Patient), or problems."""

    row: int | None
    event: InboundEvent | None = None
    problems: tuple[Problem, ...] = ()
    source: str | None = None  # the file it came from, for iter_file
    remember: Remembered | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class ParseResult:
    """Events parsed from a payload and problems with the records that were refused."""

    events: list[InboundEvent] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def add(self, result: RecordResult) -> None:
        if result.event is not None:
            self.events.append(result.event)
        self.problems.extend(result.problems)


def problems_to_rows(row: int | None, problems: list[Problem]) -> tuple[Problem, ...]:
    """The problems, each tied to record ``row``."""
    return tuple(p.at(row) for p in problems)
