"""The sharing step over a population's whole mix of events, as histories grow: events decided per second.

Run: .venv/bin/python bench/bench_follower.py [--families 400] [--chunk 250] [--window 5000]
         [--variants whole,settled] [--database-url URL]

The population of ``bench/population.py`` (families of 100 events: bookings, attendances, referrals,
waiting lists, reports, plans; seed 19, as the soak sends) is projected ``--chunk`` events at a time
(``hub.stream.projection.apply``, as the worker does) and after each chunk the sharing follower
(``Follower.step``, as the worker's follow job runs it) decides until it has caught up. Only the follower's
time is counted. Events arrive in arrival order across all families, so each pass touches many children,
and each child's record grows through the run: the figure per window of ``--window`` events shows how the
cost per event moves as histories grow.

Variants, each on a fresh temporary SQLite database (or ``--database-url``, which must be empty), one after
the other in this process (with ``--database-url``, give one variant):

* ``views``: the sharing step as it is: children whose new entries share nothing and leave their recipients
  as they were are skipped, told from the new entries and what the last whole read kept of the child
  (:func:`hub.sharing.settled.settled_by_view`) where it can, else from the child's whole record
  (:func:`hub.sharing.settled.settled`); new reports from services and authors already in the team are
  decided from the view too, without the child's record;
* ``settled``: the same skip told from the whole record only (``settled_by_view`` answering none);
* ``whole``: every touched child decided whole (both answering none), as before either rule.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import Report
from bench.population import Population
from hub.core.logging import configure_logging
from hub.db.store import Store
from hub.sharing import processor
from hub.stream import projection
from tests.sharing.sharing_support import Feeder


def run(url: str, args: argparse.Namespace) -> tuple[float, list[float], int]:
    """(events/s over the run, events/s per window, events)."""
    store = Store.open(url)
    feeder = Feeder(store, datetime.now(UTC))
    pop = Population(args.families, 100, seed=19, prefix="sk")
    events = list(pop.events())
    total = 0.0
    windows: list[float] = []
    in_window, window_seconds = 0, 0.0
    for i in range(0, len(events), args.chunk):
        chunk = events[i:i + args.chunk]
        projection.apply(store, feeder.decode(chunk))
        t = time.perf_counter()
        while feeder.follower.step(datetime.now(UTC)).more:
            pass
        spent = time.perf_counter() - t
        total += spent
        in_window += len(chunk)
        window_seconds += spent
        if in_window >= args.window:
            windows.append(in_window / window_seconds)
            in_window, window_seconds = 0, 0.0
    store.engine.dispose()
    return len(events) / total, windows, len(events)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", type=int, default=400)
    parser.add_argument("--chunk", type=int, default=250)
    parser.add_argument("--window", type=int, default=5000)
    parser.add_argument("--variants", default="whole,settled,views")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    configure_logging("WARNING")
    report = Report("sharing step over the population's mix", argv=sys.argv)
    real, by_view = processor.settled, processor.settled_by_view
    first = None
    for variant in args.variants.split(","):
        processor.settled = real if variant in ("settled", "views") else (lambda *a: set())  # type: ignore[assignment]
        processor.settled_by_view = by_view if variant == "views" else (lambda *a: (set(), {}))  # type: ignore[assignment]
        with tempfile.TemporaryDirectory() as tmp:
            rate, windows, n = run(args.database_url or f"sqlite:///{tmp}/hub.db", args)
        name = f"follower, {variant}"
        report.add(name, rate, "ev/s", base=first,
                   note=f"{n:,} events; per {args.window:,}: " + " ".join(f"{w:,.0f}" for w in windows))
        first = first or name
    processor.settled, processor.settled_by_view = real, by_view  # type: ignore[assignment]
    report.print()
    report.write_json(args.json)


if __name__ == "__main__":
    main()
