"""Children with nothing to decide: a pass whose only changes to a child are new entries that share nothing
(appointments, attendances, waiting lists) and leave the child's recipients as they were skips that child's
ledger, and where the process kept the child's view (hub.sharing.child_views) it does so, or decides a new
report from the team for the recipients the child had, without reading the child's record. The decisions and
deliveries it leaves are exactly those of deciding every touched child whole, over a year of a synthetic
population's events with a mix of consent (broad, health only, none, withdrawn)."""

from __future__ import annotations

import random
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import sqlalchemy as sa

from bench.bench_outcome import consents
from bench.population import END, Population
from hub.core.events import InboundEvent
from hub.db.schema import deliveries, share_decisions
from hub.db.store import Store
from hub.sharing import processor
from hub.sharing import settled as settled_module
from hub.stream import projection
from tests.sharing.sharing_support import Feeder

CHUNK = 20  # events per pass: several changes to one child in one pass, as under load


def timed_events(families: int, seed: int) -> list[tuple[datetime, InboundEvent]]:
    """The population's events and the outcome bench's consent mix, in arrival order."""
    pop = Population(families, 70, seed=seed, prefix="st")
    out = [t for i in range(families) for t in pop.family_events(i)] + consents(pop, random.Random(seed))
    return [t for _, t in sorted(((a, n), (a, e)) for n, (a, e) in enumerate(out))]


def ledger(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    D, S = deliveries.c, share_decisions.c
    with store.engine.connect() as conn:
        return {"decisions": sorted(tuple(r) for r in conn.execute(sa.select(
                    S.information_id, S.information_version, S.recipient_key, S.seq, S.current, S.outcome, S.rule_id,
                    S.basis, S.directive_ids, S.trigger))),
                "deliveries": sorted(tuple(r) for r in conn.execute(sa.select(
                    D.information_id, D.information_version, D.recipient_key, D.kind, D.state, D.round,
                    D.recipient_kind, D.why)))}


def run(tmp: Path, events: list[tuple[datetime, InboundEvent]], *, behind: int = 0) -> dict[str, list[tuple[Any, ...]]]:
    """Project the events CHUNK at a time and decide them; ``behind``: the sharing step reads the feed that many
    rows a pass, so it runs behind the projection (each pass reads records holding entries of later passes)."""
    tmp.mkdir()
    store = Store.open(f"sqlite:///{tmp / 'hub.db'}")
    feeder = Feeder(store, END)
    if behind:
        feeder.follower.batch = behind
    for i in range(0, len(events), CHUNK):
        chunk = events[i:i + CHUNK]
        projection.apply(store, feeder.decode([e for _, e in chunk]))
        while feeder.follower.step(chunk[-1][0]).more:
            pass
    return ledger(store)


@pytest.mark.parametrize("seed", [11, 12])
def test_skipping_children_with_nothing_to_decide_leaves_the_ledger_deciding_them_whole_leaves(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    events = timed_events(6, seed)
    real, by_view = processor.settled, processor.settled_by_view
    skipped: list[int] = []
    unread: list[int] = []
    viewed: list[int] = []

    def counting(*args: Any) -> set[tuple[str, str]]:
        out = real(*args)
        skipped.append(len(out))
        return out

    def counting_views(*args: Any) -> Any:
        quiet, decided = by_view(*args)
        unread.append(len(quiet))
        viewed.append(len(decided))
        return quiet, decided

    monkeypatch.setattr(processor, "settled", counting)
    monkeypatch.setattr(processor, "settled_by_view", counting_views)
    fast = run(tmp_path / "settled", events)
    monkeypatch.setattr(processor, "settled", lambda *args: set())
    monkeypatch.setattr(processor, "settled_by_view", lambda *args: (set(), {}))
    whole = run(tmp_path / "whole", events)
    assert sum(skipped) + sum(unread) >= len(events) // 10, "the passes should find children with nothing to decide"
    assert sum(unread) > 2 * sum(skipped), "most of them without reading their record"
    assert sum(viewed) >= 10, "and children with new reports from their team decided without it too"
    assert len(whole["decisions"]) > 50 and any(d[5] == "deny" for d in whole["decisions"])  # a real mix
    assert fast["decisions"] == whole["decisions"]
    assert fast["deliveries"] == whole["deliveries"]
    # and the test has teeth: skipping every child whose new entries share nothing, recipients changed or
    # not, loses the decisions owed to services that joined after a report (the population has them)
    monkeypatch.setattr(processor, "settled", real)
    # as if the recipients never changed: the recipients without the new entries compare equal to any
    monkeypatch.setattr(settled_module, "targets_for", lambda *args: mock.ANY)
    eager = run(tmp_path / "eager", events)
    assert len(eager["decisions"]) < len(whole["decisions"])


def test_a_sharing_step_running_behind_the_feed_leaves_the_ledger_deciding_every_child_whole_leaves(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Passes of 3 feed rows against batches of 20 events: every pass reads records that already hold entries
    whose changes later passes read (as under load). The views kept still spare most whole reads, and the
    decisions are those of deciding every child whole."""
    events = timed_events(6, 13)
    reads = processor.child_records
    read: list[int] = []

    def counting_reads(store: Store, homes: list[tuple[str, str]], memo: Any = None) -> Any:
        read.append(len(homes))
        return reads(store, homes, memo)

    monkeypatch.setattr(processor, "child_records", counting_reads)
    fast = run(tmp_path / "views", events, behind=3)
    with_views, read[:] = sum(read), []
    monkeypatch.setattr(processor, "settled", lambda *args: set())
    monkeypatch.setattr(processor, "settled_by_view", lambda *args: (set(), {}))
    whole = run(tmp_path / "whole", events, behind=3)
    # views kept as of the feed the pass read serve the next passes: 119 whole reads of 342 here; views
    # stamped with the feed's newest seq after the read served only children with nothing read ahead (171)
    assert with_views < 0.4 * sum(read), (with_views, sum(read))
    assert len(whole["decisions"]) > 50 and any(d[5] == "deny" for d in whole["decisions"])
    assert fast["decisions"] == whole["decisions"]
    assert fast["deliveries"] == whole["deliveries"]
