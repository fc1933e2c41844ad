"""The outcome bench handled per window of simulated time measures what it measured event by event: on a small
population the two runs give identical figures (real SQLite, the real pipeline, a local webhook)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.bench_outcome import figures, simulate
from bench.population import Population
from hub.db.store import Store

SEED = 20261206


def outcome(tmp_path: Path, name: str, window: timedelta | None) -> dict[str, Any]:
    store = Store.open(f"sqlite:///{tmp_path / name}.db")
    pop = Population(4, 30, seed=SEED, chunk_families=4, prefix="out")
    run = simulate(store, pop, timedelta(hours=96), SEED, window=window, escalate_every=timedelta(hours=1))
    return {"events": run["events"], **figures(store, SEED, run["linked"])}


def test_windows_of_simulated_time_give_the_figures_of_the_per_event_run(tmp_path: Path) -> None:
    per_event = outcome(tmp_path, "per-event", None)
    windowed = outcome(tmp_path, "windowed", timedelta(minutes=5))
    assert windowed == per_event
    hub = per_event["hub"]
    assert per_event["appointments_with_reports"] > 0 and hub["deliveries"] > 0  # a comparison with content:
    assert hub["alerts"].get("ack_overdue", 0) > 0 and hub["alerts"].get("readiness", 0) > 0  # escalated, swept
