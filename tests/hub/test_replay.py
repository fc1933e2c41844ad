"""`hub replay` rebuilds projections from the ingest log; `hub dlq` lists and re-drives dead letters."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from hub.cli.main import app
from hub.core.errors import CorruptRecordError
from hub.core.settings import Settings
from hub.db.schema import ingest_log, timeline_changes, timeline_entries
from hub.demo.scenario import build
from hub.ingest.services import Services
from hub.kafka.broker import EmbeddedBroker
from hub.kafka.topics import ensure_topics
from hub.stream import readmodel
from hub.stream.replay import replay_log
from tests.hub.test_ingest import consume_all


def load_journey(settings: Settings) -> tuple[Services, int]:
    """Accepted events in the ingest log, as the API would leave them (no broker needed to replay)."""
    svc = Services.build(settings)
    journey = build()
    prepared, problems = svc.ingest.prepare(journey.events)
    assert not problems
    svc.store.append([p.row for p in prepared if p])
    return svc, len(journey.events)


def test_replay_rebuilds_every_projection_from_the_log(db_url: str, tmp_path: Path) -> None:
    settings = Settings(database_url=db_url, data_dir=tmp_path, pseudonym_key="k" * 32)
    svc, n = load_journey(settings)
    assert replay_log(svc.store, svc.catalogue, settings) == n
    evans, _ = readmodel.timeline(svc.store, "household-evans", limit=500)
    lewis, _ = readmodel.timeline(svc.store, "household-lewis", limit=500)
    assert (len(evans), len(lewis)) == (29, 26)
    assert {e["child_id"] for e in evans} == {"child-evans-1", "child-evans-2", "child-evans-3"}
    with svc.store.engine.begin() as conn:  # a projection damaged (or built by an older mapping)
        conn.execute(timeline_entries.delete().where(timeline_entries.c.sector == "education"))
        changes_before = conn.execute(sa.select(sa.func.count()).select_from(timeline_changes)).scalar_one()
    assert replay_log(svc.store, svc.catalogue, settings) == n
    again, _ = readmodel.timeline(svc.store, "household-evans", limit=500)
    assert [e["event_id"] for e in again] == [e["event_id"] for e in evans]
    with svc.store.engine.connect() as conn:  # live streams see no repeats after a replay
        assert conn.execute(sa.select(sa.func.count()).select_from(timeline_changes)).scalar_one() == changes_before


def test_a_logged_record_that_no_longer_decodes_is_dead_lettered_and_the_replay_goes_on(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'hub.db'}", data_dir=tmp_path, pseudonym_key="k" * 32)
    svc, n = load_journey(settings)
    with svc.store.engine.begin() as conn:  # one logged value damaged on disk
        seq = conn.execute(sa.select(sa.func.min(ingest_log.c.seq))).scalar_one()
        topic = conn.execute(sa.select(ingest_log.c.topic).where(ingest_log.c.seq == seq)).scalar_one()
        conn.execute(ingest_log.update().where(ingest_log.c.seq == seq).values(value=b"not avro at all"))
    assert replay_log(svc.store, svc.catalogue, settings) == n
    letters = svc.store.dead_letters()
    assert [(d["topic"], d["offset"], bytes(d["value"])) for d in letters] == [(topic, -seq, b"not avro at all")]
    assert letters[0]["error_class"] == "CorruptRecordError"
    evans, _ = readmodel.timeline(svc.store, "household-evans", limit=500)
    lewis, _ = readmodel.timeline(svc.store, "household-lewis", limit=500)
    assert 0 < len(evans) + len(lewis) <= 29 + 26  # the rest is projected


def test_hub_replay_command_shows_progress_and_the_count(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    settings = Settings(database_url=url, data_dir=tmp_path, pseudonym_key="k" * 32)
    _svc, n = load_journey(settings)
    result = CliRunner().invoke(app, ["replay"], env={"HUB_DATABASE_URL": url, "HUB_DATA_DIR": str(tmp_path),
                                                      "HUB_PSEUDONYM_KEY": "k" * 32})
    assert result.exit_code == 0, result.output
    assert f"replayed {n} event versions" in result.output


@pytest.mark.broker
def test_dlq_list_and_replay_re_drive_the_original_bytes(tmp_path: Path) -> None:
    broker = EmbeddedBroker().start()
    try:
        url = f"sqlite:///{tmp_path / 'hub.db'}"
        env = {"HUB_DATABASE_URL": url, "HUB_DATA_DIR": str(tmp_path), "HUB_KAFKA_BOOTSTRAP": broker.bootstrap,
               "HUB_PSEUDONYM_KEY": "k" * 32}
        settings = Settings(database_url=url, data_dir=tmp_path, kafka_bootstrap=broker.bootstrap)
        asyncio.run(ensure_topics(settings))
        svc = Services.build(settings)
        headers = [("ce_id", b"e1.1")]
        assert svc.store.add_dead_letter(topic="hub.ingest.education", partition=2, offset=41, key="s-abc",
                                         value=b"\xc3\x01broken", headers=headers,
                                         error=CorruptRecordError("payload does not decode"))
        # the same failure seen twice (redelivery after a rebalance) is one dead letter
        assert not svc.store.add_dead_letter(topic="hub.ingest.education", partition=2, offset=41, key="s-abc",
                                             value=b"\xc3\x01broken", headers=headers,
                                             error=CorruptRecordError("payload does not decode"))
        runner = CliRunner()
        listed = runner.invoke(app, ["dlq", "list", "--json"], env=env)
        [letter] = [json.loads(line) for line in listed.output.splitlines()]
        assert (letter["topic"], letter["partition"], letter["offset"], letter["error_class"]) == (
            "hub.ingest.education", 2, 41, "CorruptRecordError")
        assert "payload does not decode" in letter["error_message"]
        replayed = runner.invoke(app, ["dlq", "replay"], env=env)
        assert replayed.exit_code == 0, replayed.output + str(replayed.exception)
        assert "re-published 1 dead-lettered record(s)" in replayed.output
        [msg] = asyncio.run(consume_all(broker.bootstrap, "hub.ingest.education", 1))
        assert msg.value == b"\xc3\x01broken" and msg.key == b"s-abc" and dict(msg.headers)["ce_id"] == b"e1.1"
        assert runner.invoke(app, ["dlq", "list", "--json"], env=env).output == ""
        [again] = runner.invoke(app, ["dlq", "list", "--all", "--json"], env=env).output.splitlines()
        assert json.loads(again)["replayed_at"]
    finally:
        broker.stop()
