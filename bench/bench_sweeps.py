"""The alert sweeps as the hub's sweep jobs run them: every household, against only the households with
something new or due since the last sweep (``hub.sharing.sweep_scope``).

Run: .venv/bin/python bench/bench_sweeps.py [--families 1000] [--touched 0.01] [--pg] [--json PATH]

The population of ``bench/population.py`` (families of 100 events, seed 19, as the soak sends) is projected
and decided (``hub.stream.projection.apply`` and the sharing follower, as the worker runs them) on a fresh
SQLite database, or with ``--pg`` a fresh PostgreSQL database ``bench_<random>`` on ``--pg-url`` (dropped
afterwards). Then, each timed:

* ``readiness, every household`` and ``coordination, every household``: one sweep of the whole population, as
  each job's first sweep reads it (the readiness sweep at the population's end, the coordination sweep at its
  event-time clock): it raises the population's alerts;
* ``..., every household again``: another whole sweep with nothing new, as the hourly backstop (or a minute in
  which every family changed, as in the soaks) reads it: every episode is seen again with its alert;
* ``..., changed``: after ``--touched`` of the households (evenly spread) received one new record each (a
  later version of their latest record), a sweep through the scope the first sweep primed: the changed
  households, those due by then and, for readiness, those active (an appointment within the week, a report
  overdue, an alert open);
* ``..., nothing new``: another scoped sweep a minute later with nothing new: the due and the active only.

Each figure is seconds a sweep; the note says how many households it read.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa

from bench.harness import Report, add_common_args, fresh_pg_database
from bench.population import END, Population
from hub.core.logging import configure_logging
from hub.db.store import Store
from hub.sharing import coordination, readiness
from hub.sharing.sweep_scope import Plan, SweepScope
from hub.stream import projection, readmodel
from tests.sharing.sharing_support import Feeder

CHUNK = 500


class Counted(SweepScope):
    """The jobs' scope, counting the households each plan names."""

    def __init__(self) -> None:
        super().__init__()
        self.planned: int | None = None

    def plan(self, conn: sa.Connection, now: datetime, basis: object = None) -> Plan:
        plan = super().plan(conn, now, basis)
        self.planned = len(plan.households) if plan.households is not None else None
        return plan


def _database(args: argparse.Namespace, tmp: Path) -> tuple[str, Callable[[], None]]:
    if not args.pg:
        return f"sqlite:///{tmp / 'hub.db'}", lambda: None
    return fresh_pg_database(args.pg_url)


def feed(feeder: Feeder, events: list[Any], at: datetime) -> None:
    """Project the events and decide them, as the worker does."""
    projection.apply(feeder.store, feeder.decode(events))
    while feeder.follower.step(at).more:
        pass


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def run(store: Store, args: argparse.Namespace, report: Report) -> None:
    pop = Population(args.families, 100, seed=19, prefix="sw")
    feeder = Feeder(store, END)
    events = list(pop.events())
    t = time.perf_counter()
    for i in range(0, len(events), CHUNK):
        feed(feeder, events[i:i + CHUNK], END)
    households = len(readmodel.households(store))
    print(f"{len(events):,} events of {households:,} households projected and decided in "
          f"{time.perf_counter() - t:.0f} s", flush=True)
    scopes = {"readiness": Counted(), "coordination": Counted()}

    def sweep(kind: str, at: Any) -> None:
        if kind == "readiness":
            readiness.sweep(store, at, scope=scopes[kind])
        else:
            coordination.sweep(store, scope=scopes[kind])

    for kind in scopes:
        whole = timed(lambda kind=kind: sweep(kind, END))
        report.add(f"{kind}, every household", whole, "s", note=f"{households:,} households")
    for kind in scopes:  # as the hourly backstop, or a minute in which every family changed, reads them
        again = timed(lambda kind=kind: readiness.sweep(store, END) if kind == "readiness"
                      else coordination.sweep(store))
        report.add(f"{kind}, every household again", again, "s", base=f"{kind}, every household",
                   note=f"{households:,} households, their alerts raised")
    step = max(1, round(1 / args.touched)) if args.touched > 0 else 0
    touched = [pop.family_events(i) for i in range(0, args.families, step)] if step else []
    news = [dataclasses.replace(max(fam, key=lambda t: t[0])[1], source_version=2) for fam in touched]
    feed(feeder, news, END + timedelta(minutes=1))
    for label, at in (("changed", END + timedelta(minutes=1)), ("nothing new", END + timedelta(minutes=2))):
        for kind in scopes:
            spent = timed(lambda kind=kind, at=at: sweep(kind, at))
            read = scopes[kind].planned
            report.add(f"{kind}, {label}", spent, "s", base=f"{kind}, every household",
                       note=f"{read if read is not None else households:,} households read"
                            + (f" ({len(news):,} changed)" if label == "changed" else ""))


def main() -> None:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    parser.add_argument("--families", type=int, default=1000)
    parser.add_argument("--touched", type=float, default=0.01, help="share of households given a new record")
    parser.add_argument("--pg", action="store_true", help="on a fresh PostgreSQL database instead of SQLite")
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    configure_logging("WARNING")
    report = Report("alert sweeps: every household or the changed and due", argv=sys.argv)
    with tempfile.TemporaryDirectory() as tmp:
        url, drop = _database(args, Path(tmp))
        try:
            store = Store.open(url)
            run(store, args, report)
            store.engine.dispose()
        finally:
            drop()
    report.print()
    report.write_json(args.json)


if __name__ == "__main__":
    main()
