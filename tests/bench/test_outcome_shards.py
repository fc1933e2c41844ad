"""The outcome bench run in slices of the population (each in its own database) gives exactly the figures of one
run over the whole population: the slices' tallies are merged, not their figures averaged (real SQLite, the real
pipeline)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bench.bench_outcome import last_arrival, result_of, simulate
from bench.outcome_figures import tallies
from bench.population import Population
from hub.db.store import Store

SEED = 20261206
FAMILIES = 4


def part(tmp_path: Path, name: str, families: list[int] | None, *, local_webhook: bool) -> dict[str, Any]:
    store = Store.open(f"sqlite:///{tmp_path / name}.db")
    pop = Population(FAMILIES, 30, seed=SEED, chunk_families=FAMILIES, prefix="out")
    run = simulate(store, pop, timedelta(hours=96), SEED, families=families, local_webhook=local_webhook,
                   until=None if families is None else last_arrival(pop, SEED))
    k, n = (0, 1) if families is None else (families[0], 2)
    return {"settings": {"families": FAMILIES, "per_event": False, "window_minutes": 5, "escalate_minutes": 60},
            "slice": [k, n], "events": run["events"], "seconds": run["seconds"], "months": run["months"],
            "tallies": tallies(store, SEED, run["linked"])}


def figures_of(parts: list[dict[str, Any]]) -> dict[str, Any]:
    out = result_of(parts)
    return {k: v for k, v in out.items() if k not in ("seconds", "events_per_second", "ms_per_event", "slices",
                                                      "per_simulated_month")}


def test_two_slices_merged_give_the_figures_of_the_whole_run(tmp_path: Path) -> None:
    # the whole run delivers over HTTP to a local endpoint, the slices to the agencies' systems in process
    whole = figures_of([part(tmp_path, "whole", None, local_webhook=True)])
    sliced = figures_of([part(tmp_path, f"slice-{k}", [i for i in range(FAMILIES) if i % 2 == k],
                              local_webhook=False) for k in (0, 1)])
    assert sliced == whole
    hub = whole["hub"]
    assert whole["appointments_with_reports"] > 0 and hub["deliveries"] > 0 and whole["no_hub"]["share"] is not None
    assert hub["alerts"].get("ack_overdue", 0) > 0 and hub["alerts"].get("readiness", 0) > 0


def test_slices_that_are_not_one_population_are_refused() -> None:
    settings = {"families": FAMILIES, "per_event": False, "window_minutes": 5, "escalate_minutes": 60}

    def made(k: int, n: int, **other: Any) -> dict[str, Any]:
        return {"settings": {**settings, **other}, "slice": [k, n], "events": 1, "seconds": 1.0, "months": {},
                "tallies": {}}

    for parts in ([made(0, 2)], [made(0, 2), made(0, 2)], [made(0, 2), made(1, 3)],
                  [made(0, 2), made(1, 2, escalate_minutes=240)]):
        with pytest.raises(SystemExit, match="not the slices 0 to N-1"):
            figures_of(parts)  # a slice missing or twice, two sizes of slicing, two settings
