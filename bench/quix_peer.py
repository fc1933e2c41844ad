"""A peer side by side: the naive per-event upsert in Quix Streams against the embedded broker.

Quix Streams is not a dependency of the hub (it pins versions the hub's own dependencies conflict with),
so it runs from a separate virtualenv, and this script imports it only in that interpreter:

    python3 -m venv /tmp/quixvenv && /tmp/quixvenv/bin/pip install quixstreams
    python bench/quix_peer.py --quix-python /tmp/quixvenv/bin/python [--events 20000]

The hub's interpreter publishes ``--events`` population events (families of 100) onto a fresh embedded
broker, then in the same run: the raw floor (aiokafka getmany + unseal + bare fastavro decode, no
database), the naive faust app and the Quix Streams app, each in its own consumer group from the earliest
offset, each doing per event: unseal, decode and one autocommitted SQLite upsert (the same statements).
Rates run from the first row to the last, capped at ``--seconds``. The Quix app gets the subjects' data
keys and the schemas in a file (it does not load the hub's database layer); it needs only quixstreams
(which brings fastavro's peer confluent-kafka; fastavro and cryptography are installed with it or by pip).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["HUB_LOG_LEVEL"] = os.environ.get("BENCH_HUB_LOG_LEVEL", "WARNING")

QUIX_APP = '''
import io, json, sqlite3, sys
sys.path.insert(0, {repo!r})
from fastavro import parse_schema, schemaless_reader
from quixstreams import Application  # imported here, in the Quix virtualenv only
from hub.wire.sealing import data_key, open_frame, parse_frame

spec = json.load(open({spec!r}))
keys = {{(s, int(v)): data_key(s, int(v), bytes.fromhex(raw)) for s, v, raw in spec["keys"]}}
parsed = {{bytes.fromhex(fp): parse_schema(schema) for fp, schema in spec["schemas"]}}
db = sqlite3.connect({db!r}, isolation_level=None)
for p in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=30000"):
    db.execute("PRAGMA " + p)
db.execute("create table if not exists events (event_id text primary key, subject text, record_type text, "
           "occurred_at text, source_version int, record text)")
db.execute("create table if not exists links (subject text primary key, child_id text, household_id text, "
           "active int, occurred_at text)")


def upsert(value):
    f = parse_frame(value)
    v = open_frame(keys[(f.subject, f.key_version)], f)
    schema = parsed[v[2:10]]
    r = schemaless_reader(io.BytesIO(v[10:]), schema, None)
    m = r["meta"]
    if schema["name"].endswith("IdentityLinked"):
        db.execute("insert into links values (?,?,?,?,?) on conflict(subject) do update set "
                   "child_id=excluded.child_id, household_id=excluded.household_id, active=excluded.active, "
                   "occurred_at=excluded.occurred_at where excluded.occurred_at > links.occurred_at",
                   (m["subject"], r["child_id"], r["household_id"], int(r["action"] == "link"),
                    m["occurred_at"].isoformat()))
    else:
        db.execute("insert into events values (?,?,?,?,?,?) on conflict(event_id) do update set "
                   "record=excluded.record, source_version=excluded.source_version "
                   "where excluded.source_version > events.source_version",
                   (m["event_id"], m["subject"], schema["name"], m["occurred_at"].isoformat(),
                    m["source_version"], json.dumps(r, default=str)))


app = Application(broker_address={broker!r}, consumer_group={group!r}, auto_offset_reset="earliest",
                  auto_create_topics=False, use_changelog_topics=False)
for name in {topics!r}:
    sdf = app.dataframe(app.topic(name, key_deserializer="bytes", value_deserializer="bytes"))
    sdf.update(upsert)
app.run()
'''


def _spec(services: Any, path: Path) -> None:
    """The subjects' data keys (raw, hex) and the schemas by fingerprint, for the Quix app."""
    import sqlalchemy as sa

    from hub.db.schema import subject_keys

    k = subject_keys.c
    with services.store.engine.connect() as conn:
        rows = conn.execute(sa.select(k.subject, k.version, k.kek_id, k.wrapped_key)).all()
    keyring = services.vault.keyring
    keys = [(r.subject, r.version, keyring.unwrap(r.kek_id, r.subject, r.version, bytes(r.wrapped_key)).hex())
            for r in rows]
    schemas = [(sv.fingerprint.hex(), sv.schema) for sv in services.catalogue.current.values()]
    path.write_text(json.dumps({"keys": keys, "schemas": schemas}))


async def run(args: argparse.Namespace, tmp: Path) -> None:
    import sqlalchemy as sa

    from bench.bench_timeline import (
        NAIVE_APP,
        raw_floor_consume,
        settings_for,
        stop_proc,
        watch_process,
    )
    from bench.harness import REPO_ROOT, Report
    from bench.pipeline_workers import publish
    from bench.population import Population
    from hub.ingest.services import Services
    from hub.kafka.broker import EmbeddedBroker, die_with_parent
    from hub.kafka.topics import INGEST_TOPICS, ensure_topics

    report = Report("peer: Quix Streams vs naive faust vs raw floor", argv=["python", *sys.argv])
    broker = EmbeddedBroker(log_dir=tmp / "broker").start()
    try:
        settings = settings_for(tmp, "peer", kafka_bootstrap=broker.bootstrap, kafka_embedded=True)
        await ensure_topics(settings)
        services = Services.build(settings)
        await services.start()
        n, expected = await publish(services, Population(max(1, args.events // 100), 100, seed=22, prefix="pl"))
        await services.stop()
        c, secs, _ = await raw_floor_consume(broker.bootstrap, services.catalogue, n, 120, services.vault)
        report.add("raw floor (aiokafka+fastavro)", c / secs if secs else 0, "ev/s",
                   note=f"{c:,} decoded in {secs:.2f} s after the first fetch; no DB")
        topics = tuple(t.name for t in INGEST_TOPICS)
        spec = tmp / "quix-spec.json"
        _spec(services, spec)
        apps = {
            "naive faust (per-event upsert)": ([sys.executable], NAIVE_APP.format(
                repo=str(REPO_ROOT), schema_dir=str(settings.schema_dir), group=f"peer-faust-{uuid.uuid4().hex[:6]}",
                broker=f"kafka://{broker.bootstrap}", datadir=str(tmp / "faust-data"), db=str(tmp / "faust.db"),
                topics=topics, hub_db=settings.effective_database_url, hub_data=str(settings.data_dir)),
                ["worker", "-l", "warn"], tmp / "faust.db"),
            "Quix Streams (per-event upsert)": ([args.quix_python], QUIX_APP.format(
                repo=str(REPO_ROOT), spec=str(spec), db=str(tmp / "quix.db"), broker=broker.bootstrap,
                group=f"peer-quix-{uuid.uuid4().hex[:6]}", topics=topics), [], tmp / "quix.db"),
        }
        for label, (python, source, extra, db) in apps.items():
            app_py = tmp / f"{db.stem}_app.py"
            app_py.write_text(textwrap.dedent(source))
            print(f"{label} ...", flush=True)
            proc = subprocess.Popen([*python, str(app_py), *extra], cwd=tmp, stdout=(tmp / f"{db.stem}.log").open("ab"),
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
            engine = sa.create_engine(f"sqlite:///{db}")
            try:
                w = await asyncio.to_thread(watch_process, proc, engine, ["events", "links"], expected, args.seconds,
                                            args.seconds + 60)
            except RuntimeError as exc:
                print(f"{label}: {exc}; see {tmp / f'{db.stem}.log'}", file=sys.stderr)
                w = {"count": 0, "seconds": 0.0, "join": 0.0, "total": 0}
            finally:
                stop_proc(proc)
                engine.dispose()
            report.add(label, w["count"] / w["seconds"] if w["seconds"] else 0.0, "ev/s",
                       note=f"{w['count']:,} rows in {w['seconds']:.1f} s after the first (join {w['join']:.1f} s); "
                            f"{'all' if w['total'] >= expected else 'stopped at cap, not all'} projected")
    finally:
        broker.stop()
    report.print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quix-python", default="/tmp/quixvenv/bin/python",
                        help="the interpreter of a virtualenv with quixstreams installed")
    parser.add_argument("--events", type=int, default=20_000, help="events published (default 20000)")
    parser.add_argument("--seconds", type=float, default=30.0, help="cap per app after its first row (default 30)")
    args = parser.parse_args()
    from hub.core.logging import configure_logging

    configure_logging(os.environ["HUB_LOG_LEVEL"], "console")
    with tempfile.TemporaryDirectory(prefix="quix-peer-") as tmp:
        asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    main()
