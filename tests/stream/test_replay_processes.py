"""`hub replay` with worker processes builds exactly the read model the single-process replay builds."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hub.core.settings import Settings
from hub.db.schema import dead_letters, identity_links, ingest_log, timeline_entries
from hub.db.sealed import sealer
from hub.db.store import Store
from hub.demo.scenario import build
from hub.ingest.services import Services
from hub.stream import readmodel, replay
from hub.stream.replay import replay_log

SEALED = ("summary", "record")


def read_model(store: Store) -> dict[str, Any]:
    """Every projected row, sealed columns opened (their nonces differ from one sealing to the next), and each
    household's timeline as the API reads it."""
    seal = sealer(store)
    T = timeline_entries.c
    with store.engine.connect() as conn:
        entries = [{**r._asdict(), **{c: seal.open(T[c], r.event_id, getattr(r, c)) for c in SEALED}}
                   for r in conn.execute(sa.select(timeline_entries).order_by(T.event_id))]
        links = [r._asdict() for r in conn.execute(sa.select(identity_links).order_by(identity_links.c.subject))]
        letters = [(r.topic, r.offset, r.error_class) for r in conn.execute(
            sa.select(dead_letters).order_by(dead_letters.c.offset))]
    households = sorted({lk["household_id"] for lk in links})
    return {"entries": entries, "links": links, "dead_letters": letters,
            "timelines": {h: readmodel.timeline(store, h, limit=500)[0] for h in households}}


def test_replay_in_worker_processes_builds_the_same_read_model(db_url: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(database_url=db_url, data_dir=tmp_path, pseudonym_key="k" * 32)
    svc = Services.build(settings)
    journey = build()
    prepared, problems = svc.ingest.prepare(journey.events)
    assert not problems
    svc.store.append([p.row for p in prepared if p])
    # a resent newer version and a damaged record: versions must win in log order, dead letters stay one each
    newer, _ = svc.ingest.prepare([replace(e, source_version=2) for e in journey.events[-5:]])
    svc.store.append([p.row for p in newer if p])
    with svc.store.engine.begin() as conn:
        seq = conn.execute(sa.select(sa.func.max(ingest_log.c.seq))).scalar_one() - 20
        conn.execute(ingest_log.update().where(ingest_log.c.seq == seq).values(value=b"not avro at all"))
    n = svc.store.log_count()
    monkeypatch.setattr(replay, "BATCH", 7)  # many batches, so their order across processes matters

    assert replay_log(svc.store, svc.catalogue, settings, processes=1) == n
    one = read_model(svc.store)
    with svc.store.engine.begin() as conn:
        conn.execute(dead_letters.delete())
    assert replay_log(svc.store, svc.catalogue, settings, processes=2) == n
    two = read_model(svc.store)

    assert len(one["entries"]) > 40 and one["links"] and len(one["dead_letters"]) == 1
    assert {e["source_version"] for e in one["entries"]} == {1, 2}
    assert two == one
