"""b'. pipeline with several workers: ``bench_timeline.py --pipeline --workers N [--pipeline-pg]``.

The same ``--pipeline-events`` population (families of 100, links included) is published onto a fresh
embedded broker for each run, and projected by 1 and then N stream worker processes (``hub worker``, one
consumer group, ``HUB_DELIVERY_MODE=process``: the workers project and decide, nothing is delivered) into
a fresh database: SQLite, or with ``--pipeline-pg`` a new PostgreSQL database on ``--pg-url`` (dropped
after). Per run: rows projected per second from the first projected row to the last, and "projected and
decided": events per second until the sharing follower's cursor has caught up with the change feed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.harness import REPO_ROOT, Report, fresh_pg_database
from bench.population import Population
from hub.ingest.services import Services
from hub.kafka.broker import EmbeddedBroker, die_with_parent
from hub.kafka.topics import ensure_topics


def _caught_up(engine: sa.Engine) -> bool:
    with engine.connect() as conn:
        pos = conn.execute(sa.text("select position from stream_cursors where name = 'sharing'")).scalar()
        newest = conn.execute(sa.text("select max(seq) from timeline_changes")).scalar()
    return newest is not None and pos == newest


async def publish(services: Services, pop: Population) -> tuple[int, int]:
    from bench.bench_timeline import chunks

    events = list(pop.events())
    expected = len(events)  # entries + links, one row each
    for batch in chunks(events, 5000):
        prepared, problems = services.ingest.prepare(batch)
        if problems:
            raise SystemExit(f"population does not fit the schemas: {problems[:3]}")
        await services.publisher.publish([p.outgoing for p in prepared if p is not None])
    return len(events), expected


def _database(args: argparse.Namespace, tmp: Path, name: str) -> tuple[str, Any]:
    """(database URL, a callable dropping it)."""
    if not args.pipeline_pg:
        return f"sqlite:///{tmp / name / 'hub.db'}", lambda: None
    return fresh_pg_database(args.pg_url)


async def one_run(args: argparse.Namespace, tmp: Path, workers: int) -> dict[str, float]:
    from bench.bench_timeline import KEY, settings_for, stop_proc, watch_process

    name = f"workers-{workers}"
    (tmp / name).mkdir(parents=True, exist_ok=True)
    url, drop = _database(args, tmp, name)
    broker = EmbeddedBroker(log_dir=tmp / f"{name}-broker").start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        settings = settings_for(tmp, name, kafka_bootstrap=broker.bootstrap, kafka_embedded=True, database_url=url)
        await ensure_topics(settings)
        services = Services.build(settings)
        await services.start()
        n, expected = await publish(services, Population(max(1, args.pipeline_events // 100), 100, seed=22,
                                                          prefix="pl"))
        await services.stop()
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        env.update(HUB_KAFKA_BOOTSTRAP=broker.bootstrap, HUB_KAFKA_EMBEDDED="true", HUB_DATA_DIR=str(settings.data_dir),
                   HUB_DATABASE_URL=url, HUB_SCHEMA_DIR=str(settings.schema_dir), HUB_PSEUDONYM_KEY=KEY,
                   HUB_LOG_LEVEL=os.environ["HUB_LOG_LEVEL"], HUB_DELIVERY_MODE="process")
        print(f"b'. {workers} worker(s): {n:,} events published; projecting ...", flush=True)
        t0 = time.perf_counter()
        for i in range(workers):
            log = (tmp / f"{name}-w{i}.log").open("ab")
            procs.append(subprocess.Popen([sys.executable, "-m", "hub.cli", "worker"],
                                          env={**env, "HUB_WORKER_NAME": f"bench-w{i}"}, cwd=REPO_ROOT, stdout=log,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          preexec_fn=die_with_parent))
        engine = services.store.engine
        w = watch_process(procs[0], engine, ["timeline_entries", "identity_links"], expected, args.max_seconds,
                          args.max_seconds + 60)
        while not _caught_up(engine) and time.perf_counter() - t0 < args.max_seconds + 120:
            time.sleep(0.1)
        decided = time.perf_counter() - t0 - w["join"]
        return {"rate": w["count"] / w["seconds"] if w["seconds"] else 0.0, "decided": n / decided if decided else 0.0,
                "rows": w["total"], "expected": expected, "join": w["join"], "seconds": w["seconds"],
                "decided_s": decided}
    finally:
        for p in procs:
            stop_proc(p)
        broker.stop()
        drop()


async def bench_workers(report: Report, args: argparse.Namespace, tmp: Path) -> None:
    db = "PostgreSQL" if args.pipeline_pg else "SQLite"
    rates: dict[int, float] = {}
    for workers in sorted({1, args.workers}):
        r = await one_run(args, tmp, workers)
        rates[workers] = r["rate"]
        report.add(f"b'. pipeline, {workers} worker(s) ({db})", r["rate"], "ev/s",
                   note=f"{r['rows']:,} of {r['expected']:,} rows; {r['seconds']:.1f} s after the first row "
                        f"(join {r['join']:.1f} s)")
        report.add(f"b'. projected and decided, {workers} worker(s) ({db})", r["decided"], "ev/s",
                   note=f"first row to sharing cursor at the feed's end: {r['decided_s']:.1f} s")
    if len(rates) > 1 and rates[1]:
        report.add(f"b'. {args.workers} workers / 1 worker ({db})", rates[args.workers] / rates[1], "x")
