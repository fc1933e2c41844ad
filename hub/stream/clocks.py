"""Statutory clocks per nation over a child's records. Pure: no Kafka, HTTP or SQL.

The rule sets are data (``hub/stream/rulesets/statutory-clocks.yaml``, each clock with its legal
source): what starts a clock, what stops it, its period, and whether each stop starts the next period
(an annual review). A ``StatutoryClockException`` record naming a clock stops it without it being
met or missed. :func:`child_clocks` gives every clock of a child with its deadline and, while it
runs, the days left; :func:`clock_episodes` gives the alerts (a running clock within ``warn_days`` of
its deadline, or past it) as coordination episodes, in event time like the other rules.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml  # type: ignore[import-untyped]

from hub.stream.coordination import ChildFacts, Episode, Fact

RULESET = Path(__file__).with_name("rulesets") / "statutory-clocks.yaml"
EXCEPTION = "StatutoryClockException"
State = Literal["running", "overdue", "met", "late", "stopped"]


@dataclass(frozen=True)
class Match:
    record_type: str
    where: Mapping[str, Any]
    date_field: str | None = None

    def matches(self, f: Fact) -> bool:
        return f.record_type == self.record_type and all(f.record.get(k) == v for k, v in self.where.items())

    def on(self, f: Fact) -> date:
        """The day the record counts from: its date field where it has one, else its event time."""
        value = f.record.get(self.date_field) if self.date_field else None
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        if isinstance(value, str) and value:
            return date.fromisoformat(value[:10])
        return f.occurred_at.date()


@dataclass(frozen=True)
class ClockRule:
    id: str
    nation: str
    title: str
    source: str
    start: Match
    stops: tuple[Match, ...]
    period: Mapping[str, int]
    repeats: bool = False

    def deadline(self, start: date) -> date:
        months = int(self.period.get("months", 0))
        year, month = divmod(start.month - 1 + months, 12)
        day = start.day
        while True:
            try:
                moved = start.replace(year=start.year + year, month=month + 1, day=day)
                break
            except ValueError:  # 31st into a shorter month
                day -= 1
        return moved + timedelta(weeks=int(self.period.get("weeks", 0)), days=int(self.period.get("days", 0)))


@dataclass(frozen=True)
class ClockSet:
    version: str
    warn_days: int
    clocks: tuple[ClockRule, ...]


def _match(spec: Mapping[str, Any]) -> Match:
    return Match(spec["record_type"], dict(spec.get("where") or {}), spec.get("date"))


def load_clocks(nations: Sequence[str] | None = None, warn_days: int | None = None, path: Path = RULESET) -> ClockSet:
    """The clocks of these nations (all when None); an unknown nation is a ValueError naming the known ones."""
    data = yaml.safe_load(path.read_text())
    clocks = tuple(ClockRule(c["id"], c["nation"], c["title"], c["source"], _match(c["start"]),
                             tuple(_match(s) for s in c["stop"]), dict(c["period"]), bool(c.get("repeats", False)))
                   for c in data["clocks"])
    known = sorted({c.nation for c in clocks})
    unknown = [n for n in nations or () if n not in known]
    if unknown:
        raise ValueError(f"unknown nation {', '.join(unknown)} (known: {', '.join(known)})")
    chosen = tuple(c for c in clocks if nations is None or c.nation in nations)
    return ClockSet(str(data["version"]), int(data["warn_days"] if warn_days is None else warn_days), chosen)


@dataclass(frozen=True)
class Clock:
    clock: str
    nation: str
    title: str
    source: str
    child_id: str
    start_event_id: str
    round: int  # 0 for the first period; a repeating clock counts its periods
    started_on: date
    deadline: date
    state: State
    days_left: int | None  # while it runs (negative: overdue)
    ended_on: date | None
    ended_by: str | None  # the record type that met it, or the exception that stopped it
    ended_at: datetime | None  # the event time of that record

    def as_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, date | datetime) else v) for k, v in self.__dict__.items()}


def _periods(rule: ClockRule, child: ChildFacts, start: Fact, now: datetime) -> Iterator[Clock]:
    began, n, after = rule.start.on(start), 0, start.occurred_at
    while True:
        deadline = rule.deadline(began)
        stop = next((f for f in child.facts if after < f.occurred_at <= now and any(m.matches(f) for m in rule.stops)),
                    None)
        exc = next((f for f in child.facts if f.record_type == EXCEPTION and f.record.get("clock") == rule.id
                    and after <= f.occurred_at <= now and (stop is None or f.occurred_at < stop.occurred_at)), None)
        base = Clock(rule.id, rule.nation, rule.title, rule.source, child.child_id, start.event_id, n, began, deadline,
                     "running", None, None, None, None)
        if exc is not None:
            yield replace(base, state="stopped", ended_on=exc.occurred_at.date(),
                          ended_by=str(exc.record.get("exception")), ended_at=exc.occurred_at)
            return
        if stop is None:
            left = (deadline - now.date()).days
            yield replace(base, state="running" if left >= 0 else "overdue", days_left=left)
            return
        ended = next(m for m in rule.stops if m.matches(stop)).on(stop)
        yield replace(base, state="met" if ended <= deadline else "late", ended_on=ended, ended_by=stop.record_type,
                      ended_at=stop.occurred_at)
        if not rule.repeats:
            return
        began, n, after = ended, n + 1, stop.occurred_at


def child_clocks(clocks: ClockSet, child: ChildFacts, now: datetime) -> list[Clock]:
    """Every clock of the child up to the event-time ``now``: running, overdue, met, late or stopped."""
    out: list[Clock] = []
    for rule in clocks.clocks:
        for start in (f for f in child.facts if rule.start.matches(f) and f.occurred_at <= now):
            out += _periods(rule, child, start, now)
    return sorted(out, key=lambda c: (c.deadline, c.clock))


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def clock_episodes(clocks: ClockSet, child: ChildFacts, now: datetime) -> list[Episode]:
    """An alert for each clock that came within ``warn_days`` of its deadline before it was met or stopped:
    raised then (event time), resolved when the clock was met, late or stopped."""
    out = []
    for c in child_clocks(clocks, child, now):
        raised = max(_midnight(c.deadline - timedelta(days=clocks.warn_days)), _midnight(c.started_on))
        if raised > now or (c.ended_at is not None and c.ended_at <= raised):
            continue
        how = {"met": "met on", "late": "met late on", "stopped": f"stopped ({c.ended_by}) on"}.get(c.state, "")
        step = (f"Ask the service responsible what stands in the way of meeting the {c.deadline:%d %b %Y} "
                "deadline, and record any exception the law allows")
        out.append(Episode(
            key=f"statutory_clock:{child.child_id}:{c.clock}:{c.start_event_id}:{c.round}", rule="statutory_clock",
            household_id=child.household_id, child_id=child.child_id, raised_at=raised, cleared_at=c.ended_at,
            message=f"{c.title}: the statutory deadline is {c.deadline:%d %b %Y} ({c.source})", step=step,
            resolution=f"{how} {c.ended_on:%d %b %Y}" if c.ended_on else None,
            details={"rule": "statutory_clock", "clock": c.clock, "nation": c.nation,
                     "deadline": c.deadline.isoformat(), "source": c.source, "step": step}))
    return out
