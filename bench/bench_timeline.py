"""Timeline benches: freshness, pipeline throughput, replay and read latency of the family timeline.

Run: /work/venv/bin/python bench/bench_timeline.py [--freshness] [--pipeline] [--replay] [--read]
                                                   [--json PATH] [options]
No sub-bench flag runs all four (about 4 minutes with the defaults). Synthetic families come from
``bench/population.py`` (deterministic by seed). Every sub-bench uses its own temporary data
directory, broker and database, and removes them (a PostgreSQL database it created is dropped).

a. freshness  ``hub.stack.Stack`` (embedded broker, 1 stream worker process, SQLite) plus the
              HTTP API on a free port (uvicorn, in this process, as ``hub up`` serves it). Families
              are enrolled first (their identity links accepted and projected), then their events are
              accepted through ``IngestService.accept`` at a fixed rate (``--rates``, default 200 and
              1,000 events/s, ``--fresh-seconds`` each) in batches every 20 ms. Per event: time from
              ``accept()`` returning to the entry being in ``timeline_entries`` (a poller in a thread
              runs one batched ``IN`` query over all outstanding ids every ``--poll-ms``); for 1 %
              of events also to the entry being returned by ``GET /v1/households/{id}/timeline``
              (filtered to its child, kind and minute). p50/p99 and the achieved rate.
b. pipeline   ``--pipeline-events`` events (families of 100, links included) prepared with
              ``IngestService.prepare`` and published with ``hub.publisher.Publisher`` in batches of
              5,000 onto a fresh embedded broker. Then, one after the other, each in its own consumer
              group from the earliest offset: (ii) the raw floor, aiokafka ``getmany`` + bare fastavro
              decode, no database; the hub's stream worker (``python -m hub.cli worker``, decode +
              identity + timeline projection, one transaction per batch); (i) a naive faust app
              (per-event decode and a per-event upsert, autocommit, same SQLite settings), capped at
              ``--naive-seconds``. Rates run from the first projected row to the last (the ~5 s group
              join against tansu is in the note).
c. replay     ``--replay-families`` x ``--replay-events`` events written straight into the ingest
              log (``IngestService.prepare`` + ``Store.append``, no broker), then
              ``hub.replay.replay_log`` timed: events/s.
d. read       ``--read-families`` families of ``--read-events`` events plus one family of
              ``--big-events`` events, loaded **directly** into ``timeline_entries`` and
              ``identity_links`` (SQLAlchemy Core ``insert()`` executemany, summaries and records sealed
              as the projection seals them; a read bench, so the projection is not run to load it), on
              SQLite and on PostgreSQL (a fresh database ``bench_<random>`` on ``--pg-url``, dropped
              afterwards; ``--no-pg`` skips it). Then
              ``readmodel.timeline(store, household, limit=50)`` for random pages and filters of the
              big family and for first pages of random small families: p50/p99. Then the same reads
              as the API makes them under the read policy (``hub/sharing/visibility.py``: the
              reader's view loaded per read, every entry decided), as the household's coordinator
              and as a parent, in the same run.

Goals: freshness p99 < 200 ms at 1,000 events/s; pipeline >= 10,000 events/s; replay >= 10,000
events/s; timeline read p99 < 25 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, before site-packages

os.environ["HUB_LOG_LEVEL"] = os.environ.get("BENCH_HUB_LOG_LEVEL", "WARNING")  # workers inherit it

import httpx
import sqlalchemy as sa
import uvicorn
from aiokafka import AIOKafkaConsumer
from fastavro import parse_schema, schemaless_reader

from bench.harness import REPO_ROOT, Report, add_common_args, paced, percentiles
from bench.population import Population
from hub.core.logging import configure_logging
from hub.core.settings import Settings
from hub.db.keyvault import SqlKeyVault
from hub.db.schema import identity_links, timeline_entries
from hub.db.sealed import sealer
from hub.db.store import Store
from hub.governance.auth import Principal
from hub.ingest.service import event_id_for
from hub.ingest.services import Services
from hub.kafka.broker import EmbeddedBroker, die_with_parent, free_port
from hub.kafka.topics import INGEST_TOPICS, ensure_topics
from hub.runtime.stack import Stack
from hub.sharing.policy_timeline import read_timeline
from hub.sharing.visibility import ReadView, narrowing
from hub.stream import readmodel
from hub.stream.batches import Processor
from hub.stream.replay import default_processes, replay_log
from hub.stream.timeline import entry_from, link_from
from hub.wire.schemas import SchemaCatalogue
from hub.wire.sealing import open_frame, parse_frame

KEY = "bench-key-0123456789abcdef"
T = timeline_entries.c


def settings_for(tmp: Path, name: str, **kw: Any) -> Settings:
    return Settings(data_dir=tmp / name, database_url=kw.pop("database_url", f"sqlite:///{tmp / name / 'hub.db'}"),
                    pseudonym_key=KEY, log_level=os.environ["HUB_LOG_LEVEL"], **kw)


def ms(samples: Sequence[float]) -> dict[str, float]:
    return percentiles([s * 1000 for s in samples], (50, 95, 99))


def chunks(items: Iterator[Any] | Sequence[Any], n: int) -> Iterator[list[Any]]:
    buf: list[Any] = []
    for it in items:
        buf.append(it)
        if len(buf) >= n:
            yield buf
            buf = []
    if buf:
        yield buf


def household_of(source_id: str) -> tuple[str, str]:
    """(household, child) from a population source id ``<hh>-c<k>-<seq>``."""
    child = source_id.rsplit("-", 1)[0]
    return child.rsplit("-", 1)[0], child


# ================================================================================ a. freshness

class Freshness:
    def __init__(self, store: Store, poll_s: float) -> None:
        self.store = store
        self.poll_s = poll_s
        self.pending: dict[str, float] = {}  # event id -> accept() returned (perf_counter)
        self.db_lat: list[float] = []
        self.polls = 0
        self.running = True

    def _found(self, ids: list[str]) -> list[str]:
        out = []
        with self.store.engine.connect() as conn:
            for i in range(0, len(ids), 900):
                out += [r[0] for r in conn.execute(sa.select(T.event_id).where(T.event_id.in_(ids[i:i + 900])))]
        return out

    async def poll(self) -> None:
        clock = time.perf_counter
        while self.running or self.pending:
            if self.pending:
                ids = list(self.pending)
                seen_at = clock()  # the query's snapshot is no older than this
                found = await asyncio.to_thread(self._found, ids)
                self.polls += 1
                for eid in found:
                    t = self.pending.pop(eid, None)
                    if t is not None:
                        self.db_lat.append(max(0.0, seen_at - t))
            await asyncio.sleep(self.poll_s)


_TOKENS: dict[str, dict[str, str]] = {}
_TOKEN_SERVICE: Any = None


def auth(household: str) -> dict[str, str]:
    """A bearer token of a parent of the household (the API authenticates every request, hub/governance/auth.py);
    a parent's own-household check needs no database lookup, unlike a coordinator's caseload."""
    if _TOKEN_SERVICE is None:
        return {}
    if household not in _TOKENS:
        token = _TOKEN_SERVICE.create(f"bench-parent-{household}", "parent", household=household)
        _TOKENS[household] = {"Authorization": f"Bearer {token}"}
    return _TOKENS[household]


async def api_visible(client: httpx.AsyncClient, hh: str, child: str, kind: str, occurred: datetime, eid: str,
                      accepted: float, out: list[float], interval: float, timeout: float = 10.0) -> None:
    params = {"child_id": child, "kind": kind, "since": occurred.isoformat(),
              "until": (occurred + timedelta(seconds=1)).isoformat(), "limit": 50}
    clock = time.perf_counter
    last = None
    while clock() - accepted < timeout:
        t = clock()
        try:
            r = await client.get(f"/v1/households/{hh}/timeline", params=params, headers=auth(hh))
            last = r.status_code
            if r.status_code == 200 and any(e["event_id"] == eid for e in r.json()["entries"]):
                out.append(t - accepted)
                return
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        await asyncio.sleep(interval)
    print(f"   API never showed a sampled event within {timeout:.0f} s (last answer: {last})", file=sys.stderr)


PATCHED_WORKER = """
import runpy, sys
import aiokafka
_init = aiokafka.AIOKafkaConsumer.__init__
def _patched(self, *a, **kw):
    kw["fetch_max_wait_ms"] = {ms}
    _init(self, *a, **kw)
aiokafka.AIOKafkaConsumer.__init__ = _patched
sys.argv = ["hub", "worker"]
runpy.run_module("hub.cli", run_name="__main__")
"""


async def freshness_phase(services: Services, client: httpx.AsyncClient, events: list[Any], rate: float,
                          seconds: float, poll_s: float) -> dict[str, Any]:
    tick = 0.02
    fr = Freshness(services.store, poll_s)
    poller = asyncio.create_task(fr.poll())
    api_lat: list[float] = []
    api_tasks: list[asyncio.Task[None]] = []
    accept_lat: list[float] = []
    accepted = 0
    rng = random.Random(5)

    async def send(batch: list[Any]) -> None:
        nonlocal accepted
        t = time.perf_counter()
        res = await services.ingest.accept(batch)
        done = time.perf_counter()
        accept_lat.append(done - t)
        for ev, acc in zip(batch, res, strict=True):
            fr.pending[acc.event_id] = done
            if rng.random() < 0.01:
                hh, child = household_of(ev.source_id)
                api_tasks.append(asyncio.create_task(api_visible(
                    client, hh, child, ev.record_type, ev.occurred_at.astimezone(UTC), acc.event_id, done,
                    api_lat, 0.02)))
        accepted += len(batch)

    start = time.perf_counter()
    await paced(min(len(events), int(rate * seconds)), rate, lambda a, b: send(events[a:b]), tick=tick)
    elapsed = time.perf_counter() - start
    fr.running = False
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(poller, timeout=30)
    await asyncio.gather(*api_tasks)
    return {"rate": accepted / elapsed, "accepted": accepted, "seconds": elapsed, "db": fr.db_lat,
            "api": api_lat, "missing": len(fr.pending), "polls": fr.polls, "accept": accept_lat}


async def bench_freshness(report: Report, args: argparse.Namespace, tmp: Path) -> None:
    rates = [float(r) for r in args.rates.split(",")]
    need = int(sum(rates) * args.fresh_seconds) + 1000
    families = max(50, need // 90)
    pop = Population(families, 100, seed=11, prefix="fr")
    evs = [e for e in pop.events() if e.record_type != "IdentityLinked"]
    links = list(pop.links())
    patched = args.worker_fetch_wait_ms is not None
    settings = settings_for(tmp, "fresh", api_port=free_port(), workers=0 if patched else 1)
    stack = Stack(settings)
    tag = f" (fetch wait {args.worker_fetch_wait_ms} ms)" if patched else ""
    server: uvicorn.Server | None = None
    serve: asyncio.Task[None] | None = None
    try:
        t = time.perf_counter()
        Store.open(settings.effective_database_url).engine.dispose()  # as `hub migrate` would, before the hub
        services = await stack.start()
        if patched:  # the same worker, its consumer's fetch_max_wait_ms overridden (faust hard-codes 1500)
            stack.workers.append(subprocess.Popen(
                [sys.executable, "-c", PATCHED_WORKER.format(ms=args.worker_fetch_wait_ms)],
                env={**stack.worker_env(), "HUB_WORKER_NAME": "worker-0"}, cwd=REPO_ROOT,
                preexec_fn=die_with_parent, stdin=subprocess.DEVNULL))
        from hub.api.app import create_app
        global _TOKEN_SERVICE
        try:
            from hub.governance.auth import TokenService
            _TOKEN_SERVICE = TokenService(services.settings)
        except ImportError:  # an API without authentication
            _TOKEN_SERVICE = None
        server = uvicorn.Server(uvicorn.Config(create_app(services), host="127.0.0.1", port=settings.api_port,
                                               log_config=None, access_log=False, lifespan="on"))
        serve = asyncio.create_task(server.serve())
        await stack.wait_ready(120)
        print(f"a. stack up in {time.perf_counter() - t:.1f} s (broker, worker pid {stack.workers[0].pid}, "
              f"API :{settings.api_port}); enrolling {families} families ({len(links):,} links) ...", flush=True)
        for batch in chunks(links, 500):
            await services.ingest.accept(batch)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with services.store.engine.connect() as conn:
                if conn.execute(sa.select(sa.func.count()).select_from(identity_links)).scalar_one() >= len(links):
                    break
            await asyncio.sleep(0.1)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api_port}", timeout=10) as client:
            offset = 0
            for rate in rates:
                n = int(rate * args.fresh_seconds)
                print(f"a. {rate:,.0f} events/s for {args.fresh_seconds:.0f} s ...", flush=True)
                r = await freshness_phase(services, client, evs[offset:offset + n], rate, args.fresh_seconds,
                                          args.poll_ms / 1000)
                offset += n
                p, pa, pacc = ms(r["db"]), ms(r["api"]), ms(r["accept"])
                name = f"a. freshness @{rate:,.0f}/s p99{tag}"
                report.add(name, p["p99"], "ms",
                           note=f"accept()->in timeline_entries: p50 {p['p50']:.1f} / p95 {p['p95']:.1f} ms; "
                                f"{len(r['db']):,} events, {r['missing']} never seen; goal p99 < 200 ms at 1,000/s",
                           extra={"db_ms": p, "api_ms": pa, "accept_ms": pacc, "polls": r["polls"]})
                report.add(f"a. freshness @{rate:,.0f}/s p50{tag}", p["p50"], "ms", note="same events, median")
                report.add(f"a. via HTTP API @{rate:,.0f}/s p99{tag}", pa["p99"], "ms",
                           note=f"GET timeline until the entry is returned: p50 {pa['p50']:.1f} ms; "
                                f"{len(r['api'])} sampled events (1 %)")
                report.add(f"a. achieved rate @{rate:,.0f}/s{tag}", r["rate"], "ev/s",
                           note=f"{r['accepted']:,} accepted in {r['seconds']:.1f} s, batches every 20 ms; "
                                f"accept() p50 {pacc['p50']:.1f} / p99 {pacc['p99']:.1f} ms")
    finally:
        if server is not None:
            server.should_exit = True
        if serve is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(serve, 10)
        await stack.stop()


# ================================================================================= b. pipeline

NAIVE_APP = '''
import io, json, os, sqlite3, sys
sys.path.insert(0, {repo!r})
import faust
from hub.wire.schemas import SchemaCatalogue
from hub.db.keyvault import sealed_serde
from hub.core.settings import Settings
from hub.db.store import Store
from hub.stream.timeline import to_json

from pathlib import Path
catalogue = SchemaCatalogue(Path({schema_dir!r}))
hub_settings = Settings(database_url={hub_db!r}, data_dir=Path({hub_data!r}))
serde = sealed_serde(catalogue, hub_settings, Store.open(hub_settings.effective_database_url, migrate_schema=False))
app = faust.App({group!r}, broker={broker!r}, store="memory://", datadir={datadir!r}, web_enabled=False,
                topic_allow_declare=False, consumer_auto_offset_reset="earliest", producer_acks=-1,
                broker_rebalance_timeout=2.0, broker_session_timeout=10.0, broker_heartbeat_interval=3.0)
db = sqlite3.connect({db!r}, isolation_level=None)  # autocommit: one transaction per statement
for p in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=30000"):
    db.execute("PRAGMA " + p)
db.execute("create table if not exists events (event_id text primary key, subject text, record_type text, "
           "occurred_at text, source_version int, record text)")
db.execute("create table if not exists links (subject text primary key, child_id text, household_id text, "
           "active int, occurred_at text)")
topic = app.topic(*{topics!r}, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


@app.agent(topic)
async def project(stream):
    async for value in stream:  # one event at a time: decode, upsert, commit
        d = serde.decode(value)
        r = d.record
        m = r["meta"]
        if d.record_type == "IdentityLinked":
            db.execute("insert into links values (?,?,?,?,?) on conflict(subject) do update set "
                       "child_id=excluded.child_id, household_id=excluded.household_id, active=excluded.active, "
                       "occurred_at=excluded.occurred_at where excluded.occurred_at > links.occurred_at",
                       (m["subject"], r["child_id"], r["household_id"], int(r["action"] == "link"),
                        m["occurred_at"].isoformat()))
        else:
            db.execute("insert into events values (?,?,?,?,?,?) on conflict(event_id) do update set "
                       "record=excluded.record, source_version=excluded.source_version "
                       "where excluded.source_version > events.source_version",
                       (m["event_id"], m["subject"], d.record_type, m["occurred_at"].isoformat(),
                        m["source_version"], to_json(r)))


if __name__ == "__main__":
    app.main()
'''


async def raw_floor_consume(bootstrap: str, catalogue: SchemaCatalogue, expected: int, cap: float,
                            vault: SqlKeyVault, keep: list[Any] | None = None) -> tuple[int, float, float]:
    """aiokafka getmany + AES-GCM open + bare fastavro decode of everything: (count after first fetch,
    seconds, join s). Values are sealed with per-subject keys (hub/wire/sealing.py); the keys are cached."""
    parsed = {sv.fingerprint: parse_schema(sv.schema) for sv in catalogue.current.values()}
    consumer = AIOKafkaConsumer(*(t.name for t in INGEST_TOPICS), bootstrap_servers=bootstrap,
                                group_id=f"bench-floor-{uuid.uuid4().hex[:6]}", auto_offset_reset="earliest",
                                enable_auto_commit=False, max_partition_fetch_bytes=8 * 1024 * 1024,
                                fetch_max_bytes=64 * 1024 * 1024)
    t0 = time.perf_counter()
    await consumer.start()
    total = first_n = 0
    first = last = None
    try:
        while total < expected and time.perf_counter() - t0 < cap:
            batches = await consumer.getmany(timeout_ms=500, max_records=2000)
            for msgs in batches.values():
                for m in msgs:
                    f = parse_frame(m.value)
                    v = open_frame(vault.get(f.subject, f.key_version), f)
                    schemaless_reader(io.BytesIO(v[10:]), parsed[v[2:10]], None)
                if keep is not None:
                    keep += [(m.topic, m.partition, m.offset, m.key, m.value, list(m.headers or [])) for m in msgs]
                total += len(msgs)
            if total and first is None:
                first, first_n = time.perf_counter(), total
            last = time.perf_counter()
    finally:
        await consumer.stop()
    if first is None or last is None:
        return 0, 0.0, 0.0
    return total - first_n, last - first, first - t0


def count_rows(engine: sa.Engine, tables: Sequence[str]) -> int:
    with engine.connect() as conn:
        return sum(int(conn.execute(sa.text(f"select count(*) from {t}")).scalar_one()) for t in tables)


def watch_process(proc: subprocess.Popen[bytes], engine: sa.Engine, tables: Sequence[str], expected: int,
                  cap_after_first: float, cap_total: float) -> dict[str, float]:
    """Poll row counts until ``expected`` rows: first-row time, done time and count."""
    t0 = time.perf_counter()
    first = None
    n_first = 0
    n = 0
    while True:
        now = time.perf_counter()
        try:
            n = count_rows(engine, tables)
        except sa.exc.OperationalError:
            n = 0  # tables not created yet (naive app)
        if n and first is None:
            first, n_first = now, n
        if n >= expected:
            break
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        if (first is not None and now - first > cap_after_first) or now - t0 > cap_total:
            break
        time.sleep(0.05)
    end = time.perf_counter()
    return {"join": (first or end) - t0, "seconds": end - (first or end), "count": n - n_first, "total": n,
            "wall": end - t0}


def stop_proc(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


WORKER_BATCH = 1000  # hub.runtime.worker.BATCH


async def projection_step(services: Services, messages: list[Any]) -> float:
    """The stream worker's per-batch work alone (decode, unseal, dead-letter, project; one transaction a
    batch) over records already fetched: the projection tables are emptied first, then refilled."""
    with services.store.engine.begin() as conn:
        for table in ("timeline_changes", "timeline_entries", "identity_links"):
            conn.execute(sa.text(f"delete from {table}"))
    processor = Processor(services.store, services.serde, services.catalogue, None)
    t = time.perf_counter()
    for batch in chunks(messages, WORKER_BATCH):
        await processor.handle(batch)
    secs = time.perf_counter() - t
    print(f"b. projection step: {len(messages):,} records in {secs:.1f} s", flush=True)
    return len(messages) / secs if secs else 0.0


def start_py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """A sampling profile of the worker (py-spy attached to its pid, collapsed stacks) until stopped."""
    exe = Path(sys.executable).parent / "py-spy"
    return subprocess.Popen([str(exe), "record", "--pid", str(pid), "--format", "raw", "--rate", "200",
                             "--nonblocking", "--output", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)


def stop_py_spy(spy: subprocess.Popen[bytes], out: Path) -> None:
    """Stop the profile (py-spy writes its file on SIGINT) and print its top entries."""
    from bench.profile_top import from_collapsed, table

    spy.send_signal(signal.SIGINT)
    try:
        spy.wait(30)
    except subprocess.TimeoutExpired:
        spy.kill()
        spy.wait()
    if out.exists():
        own, total, n = from_collapsed(out.read_text().splitlines())
        print(f"b. hub worker profile (py-spy, {out}):\n{table(own, total, n, 20)}", flush=True)


async def bench_pipeline(report: Report, args: argparse.Namespace, tmp: Path) -> None:
    if args.workers > 1 or args.pipeline_pg:  # 1 and N workers side by side (bench/pipeline_workers.py)
        from bench.pipeline_workers import bench_workers

        await bench_workers(report, args, tmp)
        return
    families = max(1, args.pipeline_events // 100)
    pop = Population(families, 100, seed=22, prefix="pl")
    broker = EmbeddedBroker(log_dir=tmp / "pipeline-broker").start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        settings = settings_for(tmp, "pipeline", kafka_bootstrap=broker.bootstrap, kafka_embedded=True)
        await ensure_topics(settings)
        services = Services.build(settings)
        await services.start()
        t = time.perf_counter()
        events = list(pop.events())
        links = {(e.subject.system, e.subject.value) for e in events if e.record_type == "IdentityLinked"}
        entries = len(events) - sum(1 for e in events if e.record_type == "IdentityLinked")
        gen_s = time.perf_counter() - t
        t = time.perf_counter()
        outgoing = []
        for batch in chunks(events, 5000):
            prepared, problems = services.ingest.prepare(batch)
            if problems:
                raise SystemExit(f"population does not fit the schemas: {problems[:3]}")
            outgoing += [p.outgoing for p in prepared if p is not None]
        prep_s = time.perf_counter() - t
        t = time.perf_counter()
        for batch in chunks(outgoing, 5000):
            await services.publisher.publish(batch)
        pub_s = time.perf_counter() - t
        await services.stop()
        n = len(outgoing)
        print(f"b. {n:,} events ({families:,} families): generated in {gen_s:.1f} s, prepared in {prep_s:.1f} s, "
              f"published in {pub_s:.1f} s", flush=True)

        print("b. raw floor: aiokafka getmany + fastavro decode ...", flush=True)
        consumed: list[Any] = []
        c, secs, join = await raw_floor_consume(broker.bootstrap, services.catalogue, n, 120, services.vault,
                                                keep=consumed)
        report.add("b. raw floor (aiokafka+fastavro)", c / secs if secs else 0, "ev/s",
                   note=f"{c:,} decoded in {secs:.2f} s after the first fetch (start->first {join:.1f} s); no DB")

        expected = entries + len(links)
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        env.update(HUB_KAFKA_BOOTSTRAP=broker.bootstrap, HUB_KAFKA_EMBEDDED="true",
                   HUB_DATA_DIR=str(settings.data_dir), HUB_DATABASE_URL=settings.effective_database_url,
                   HUB_SCHEMA_DIR=str(settings.schema_dir), HUB_PSEUDONYM_KEY=KEY, HUB_WORKER_NAME="bench-w0",
                   HUB_LOG_LEVEL=os.environ["HUB_LOG_LEVEL"])
        print(f"b. hub worker: projecting {entries:,} entries + {len(links):,} links ...", flush=True)
        log = (tmp / "pipeline-worker.log").open("ab")
        proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "worker"], env=env, cwd=REPO_ROOT, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
        procs.append(proc)
        spy = start_py_spy(proc.pid, args.py_spy) if args.py_spy else None
        w = await asyncio.to_thread(watch_process, proc, services.store.engine, ["timeline_entries",
                                                                                   "identity_links"],
                                    expected, args.max_seconds, args.max_seconds + 60)
        if spy is not None:
            stop_py_spy(spy, args.py_spy)
        stop_proc(proc)
        hub_rate = w["count"] / w["seconds"] if w["seconds"] else 0.0

        step = await projection_step(services, consumed)
        report.add("b. projection step (in process)", step, "ev/s",
                   note=f"Processor.handle over the {len(consumed):,} consumed records in batches of {WORKER_BATCH:,}, "
                        "fresh projection tables, no broker, no sharing step")
        base = None
        if not args.no_naive:
            print(f"b. naive faust (per-event decode + upsert, {args.naive_seconds:.0f} s cap) ...", flush=True)
            app_py = tmp / "naive_app.py"
            naive_db = tmp / "naive.db"
            app_py.write_text(textwrap.dedent(NAIVE_APP).format(
                repo=str(REPO_ROOT), schema_dir=str(settings.schema_dir), group=f"bench-naive-{uuid.uuid4().hex[:6]}",
                broker=f"kafka://{broker.bootstrap}", datadir=str(tmp / "naive-data"), db=str(naive_db),
                topics=tuple(t.name for t in INGEST_TOPICS), hub_db=settings.effective_database_url,
                hub_data=str(settings.data_dir)))
            proc = subprocess.Popen([sys.executable, str(app_py), "worker", "-l", "warn"], cwd=tmp,
                                    stdout=(tmp / "naive.log").open("ab"), stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
            procs.append(proc)
            naive_engine = sa.create_engine(f"sqlite:///{naive_db}")
            wn = await asyncio.to_thread(watch_process, proc, naive_engine, ["events", "links"], expected,
                                         args.naive_seconds, args.naive_seconds + 60)
            stop_proc(proc)
            naive_engine.dispose()
            naive_rate = wn["count"] / wn["seconds"] if wn["seconds"] else 0.0
            report.add("b. naive faust (per-event upsert)", naive_rate, "ev/s",
                       note=f"{wn['count']:,} rows in {wn['seconds']:.1f} s after the first (join {wn['join']:.1f} s); "
                            f"{'all' if wn['total'] >= expected else 'stopped at cap, not all'} projected")
            base = "b. naive faust (per-event upsert)"
        report.add("b. pipeline (hub worker)", hub_rate, "ev/s", base=base,
                   note=f"{w['count']:,} rows ({entries:,} entries + {len(links):,} links) in {w['seconds']:.1f} s "
                        f"after the first (join {w['join']:.1f} s); goal >= 10,000/s",
                   extra={"expected": expected, "projected": w["total"]})
        report.add("b. hub worker, x of raw floor", hub_rate / (c / secs) if secs and c else 0, "x",
                   note="pipeline (hub worker) / raw floor")
        if w["total"] < expected:
            print(f"warning: hub worker projected {w['total']:,} of {expected:,} rows", file=sys.stderr)
    finally:
        for p in procs:
            stop_proc(p)
        broker.stop()


# =================================================================================== c. replay

def fill_log(services: Services, pop: Population, chunk: int = 5000) -> int:
    n = 0
    for batch in chunks(pop.events(), chunk):
        prepared, problems = services.ingest.prepare(batch)
        if problems:
            raise SystemExit(f"population does not fit the schemas: {problems[:3]}")
        services.store.append([p.row for p in prepared if p is not None])
        n += len(batch)
    return n


async def bench_replay(report: Report, args: argparse.Namespace, tmp: Path) -> None:
    pop = Population(args.replay_families, args.replay_events, seed=33, prefix="rp")
    settings = settings_for(tmp, "replay")
    services = Services.build(settings)  # the publisher is never started: no broker
    print(f"c. writing {pop.total:,} events ({pop.families:,} x {pop.events_per_family}) into the ingest log ...",
          flush=True)
    t = time.perf_counter()
    n = fill_log(services, pop)
    fill_s = time.perf_counter() - t
    print(f"c. ingest log filled in {fill_s:.1f} s ({n / fill_s:,.0f}/s); replaying ...", flush=True)
    digests: set[str] = set()
    for spec in args.replay_processes.split(","):
        processes = None if spec == "auto" else int(spec)
        label = f"{default_processes(n) if processes is None else processes} process(es){' (auto)' * (not processes)}"
        print(f"c. replaying with {label} ...", flush=True)
        t = time.perf_counter()
        if args.profile_replay:
            from pyinstrument import Profiler
            prof = Profiler()
            prof.start()
        done = replay_log(services.store, services.catalogue, settings, processes=processes)
        s = time.perf_counter() - t
        if args.profile_replay:
            prof.stop()
            print(prof.output_text(unicode=False, color=False, show_all=False))
        entries = count_rows(services.store.engine, ["timeline_entries"])
        digests.add(read_model_digest(services.store.engine))
        report.add(f"c. replay_log (SQLite, {label})", done / s, "ev/s",
                   note=f"{done:,} events ({pop.families:,} families x {pop.events_per_family}) in {s:.1f} s -> "
                        f"{entries:,} entries; same read model as the other runs: {len(digests) == 1}; "
                        "goal >= 15,000/s at 1M (10,000 x 100)",
                   extra={"events": done, "families": pop.families, "events_per_family": pop.events_per_family,
                          "fill_seconds": fill_s, "processes": processes})
    services.store.engine.dispose()


def read_model_digest(engine: sa.Engine) -> str:
    """A digest of the projected rows' plain columns (sealed ones differ by nonce from one replay to the next)."""
    import hashlib
    h = hashlib.sha256()
    with engine.connect() as conn:
        for r in conn.execute(sa.select(T.event_id, T.source_version, T.late, T.subject, T.occurred_at)
                              .order_by(T.event_id)):
            h.update(repr(tuple(r)).encode())
        for r in conn.execute(sa.select(identity_links).order_by(identity_links.c.subject)):
            h.update(repr(tuple(r)).encode())
    return h.hexdigest()


# ===================================================================================== d. read

def projection_rows(pop: Population, pseudonymise: Any, catalogue: SchemaCatalogue, start: int, stop: int
                    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows as the projection writes them, built with hub.timeline.entry_from / link_from."""
    entries: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []
    ce = {}
    for ev in pop.events(start, stop):
        occurred = ev.occurred_at
        meta = {"event_id": event_id_for(ev.source_system, ev.source_id), "source_system": ev.source_system,
                "source_id": ev.source_id, "source_version": 1, "occurred_at": occurred,
                "received_at": occurred + timedelta(minutes=5), "subject": pseudonymise(ev.subject.system,
                                                                                         ev.subject.value),
                "category": ev.category, "status": "active", "mapping": ev.mapping}
        record = {"meta": meta, **ev.body}
        if ev.record_type == "IdentityLinked":
            links.append(link_from(record).__dict__)
        else:
            if ev.record_type not in ce:
                ce[ev.record_type] = catalogue.writer(ev.record_type).ce_type
            row = dict(entry_from(ev.record_type, ce[ev.record_type], record).__dict__)
            if "late" in timeline_entries.c:  # the projection marks entries that arrived after a later one
                row["late"] = False
            entries.append(row)
    return entries, links


def load_read_data(stores: list[Store], args: argparse.Namespace, services: Services) -> tuple[str, list[str], int]:
    big = Population(1, args.big_events, seed=44, prefix="big", id_offset=900_000)
    small = Population(args.read_families, args.read_events, seed=45, prefix="rd")
    rows = 0
    batches = [(big, 0, 1)] + [(small, lo, min(lo + 2000, small.families))
                               for lo in range(0, small.families, 2000)]
    for pop, lo, hi in batches:
        entries, links = projection_rows(pop, services.pseudonymise, services.catalogue, lo, hi)
        for store in stores:
            # summaries and records sealed as the projection seals them, with each database's own data keys
            seal = sealer(store)
            for subject in {e["subject"] for e in entries}:
                seal.vault.current(subject)  # the keys first, as ingest makes them (one transaction each)
            sealed = [{**e, "summary": seal.seal(T.summary, e["event_id"], e["subject"], e["summary"]),
                       "record": seal.seal(T.record, e["event_id"], e["subject"], e["record"])} for e in entries]
            with store.engine.begin() as conn:
                for part in chunks(sealed, 10000):
                    conn.execute(timeline_entries.insert(), part)
                conn.execute(identity_links.insert(), links)
        rows += len(entries)
    for store in stores:
        with store.engine.begin() as conn:
            conn.execute(sa.text("ANALYZE"))
    return big.family(0).household_id, [c.child_id for c in big.family(0).children], rows


Read = Callable[..., tuple[list[dict[str, Any]], str | None]]


def raw_read(store: Store, household: str, **kw: Any) -> tuple[list[dict[str, Any]], str | None]:
    return readmodel.timeline(store, household, **kw)


def policy_read(role: str) -> Read:
    """The timeline as the API reads it under the read policy, for a coordinator or a parent of the household."""
    def read(store: Store, household: str, **kw: Any) -> tuple[list[dict[str, Any]], str | None]:
        who = Principal("bench-reader", role, household=household if role == "parent" else None)
        view = ReadView.load(store, who, [household])
        only = narrowing(view, household)
        return readmodel.timeline(store, household, view=view.entry_view(household, kw.get("kind")),
                                  only_children=only, **kw)
    return read


def folded_read(role: str) -> Read:
    """The same read as :func:`policy_read`, with the household facts read on the page query's connection
    (``hub/sharing/policy_timeline.py``), as the API's timeline route now reads."""
    def read(store: Store, household: str, **kw: Any) -> tuple[list[dict[str, Any]], str | None]:
        who = Principal("bench-reader", role, household=household if role == "parent" else None)
        return read_timeline(store, who, household, **kw)
    return read


def read_queries(store: Store, big_hh: str, children: list[str], small_hhs: list[str], n: int,
                 reads: Sequence[Read] = (raw_read,)) -> list[dict[str, list[float]]]:
    """``n`` random reads of the big family and ``n`` of small ones, each made by every reader in ``reads`` in
    a shuffled order (interleaved, so a busy spell on a shared machine falls on all of them alike)."""
    rng = random.Random(7)
    # the big family's page cursors, walking it once
    cursors: list[str | None] = [None]
    rows, nxt = readmodel.timeline(store, big_hh, limit=50)
    first_times = [r["occurred_at"] for r in rows]
    while nxt:
        cursors.append(nxt)
        rows, nxt = readmodel.timeline(store, big_hh, cursor=nxt, limit=50)
        first_times += [r["occurred_at"] for r in rows]
    big_total = len(first_times)
    kinds = ["AppointmentBooked", "AttendanceRecorded", "ReportIssued", "ReferralMade", "WaitingListEntered"]
    sectors = ["health", "social_care", "education"]
    outs: list[dict[str, list[float]]] = [{"big": [], "small": [], "big_pages": []} for _ in reads]
    clock = time.perf_counter
    for _ in range(n // 10):  # warm-up
        for read in reads:
            read(store, big_hh, limit=50)
            read(store, rng.choice(small_hhs), limit=50)
    order = list(range(len(reads)))
    for i in range(n):
        kw: dict[str, Any] = {"cursor": rng.choice(cursors)}
        r = rng.random()
        if r < 0.25:
            kw["child_id"] = rng.choice(children)
        elif r < 0.45:
            kw["sector"] = rng.choice(sectors)
        elif r < 0.60:
            kw["kind"] = rng.choice(kinds)
        elif r < 0.75:
            since = rng.choice(first_times)
            kw.update(cursor=None, since=since, until=since + timedelta(days=30))
        hh = rng.choice(small_hhs)
        kw2 = {"sector": rng.choice(sectors)} if i % 4 == 0 else {}
        rng.shuffle(order)
        for k in order:
            read, out = reads[k], outs[k]
            t = clock()
            read(store, big_hh, limit=50, **kw)
            out["big"].append(clock() - t)
            if len(kw) == 1:
                out["big_pages"].append(out["big"][-1])
            t = clock()
            read(store, hh, limit=50, **kw2)
            out["small"].append(clock() - t)
    for out in outs:
        out["_big_total"] = [float(big_total)]
    return outs


async def bench_read(report: Report, args: argparse.Namespace, tmp: Path) -> None:
    settings = settings_for(tmp, "read")
    services = Services.build(settings)
    backends: list[tuple[str, Store]] = [("SQLite", services.store)]
    pg_db = None
    admin = None
    if not args.no_pg:
        try:
            admin = sa.create_engine(args.pg_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
            pg_db = f"bench_{uuid.uuid4().hex[:10]}"
            with admin.connect() as conn:
                conn.execute(sa.text(f"CREATE DATABASE {pg_db}"))
            pg = Store.open(args.pg_url.rsplit("/", 1)[0] + f"/{pg_db}")
            pg.vault = SqlKeyVault(pg, services.vault.keyring)
            backends.append(("PostgreSQL", pg))
        except Exception as exc:
            print(f"d. PostgreSQL skipped: {type(exc).__name__}: {str(exc).splitlines()[0]}", file=sys.stderr)
            pg_db = None
    try:
        t = time.perf_counter()
        print(f"d. loading {args.read_families:,} families x {args.read_events} + 1 x {args.big_events} into "
              f"{' and '.join(b for b, _ in backends)} ...", flush=True)
        big_hh, children, rows = load_read_data([s for _, s in backends], args, services)
        print(f"d. loaded {rows:,} entries per backend in {time.perf_counter() - t:.1f} s", flush=True)
        small_hhs = [f"rd-45-{i:07d}" for i in range(args.read_families)]
        readers: list[tuple[str, Read]] = [("", raw_read), (", read policy as coordinator", policy_read("coordinator")),
                                           (", read policy as parent", policy_read("parent")),
                                           (", read policy as coordinator, one connection",
                                            folded_read("coordinator")),
                                           (", read policy as parent, one connection", folded_read("parent"))]
        for name, store in backends:
            results = read_queries(store, big_hh, children, small_hhs, args.read_queries, [rd for _, rd in readers])
            for (label, _), r in zip(readers, results, strict=True):
                pb, ps, pp = ms(r["big"]), ms(r["small"]), ms(r["big_pages"])
                report.add(f"d. read big family p99 ({name}{label})", pb["p99"], "ms",
                           note=f"p50 {pb['p50']:.2f} ms; {int(r['_big_total'][0])}-entry family, random page/filter, "
                                f"limit 50, {len(r['big'])} reads; unfiltered pages p50 {pp['p50']:.2f} / p99 "
                                f"{pp['p99']:.2f} ms; goal p99 < 25 ms", extra={"big_ms": pb, "big_pages_ms": pp})
                report.add(f"d. read small family p99 ({name}{label})", ps["p99"], "ms",
                           note=f"p50 {ps['p50']:.2f} ms; random one of {args.read_families:,} families of "
                                f"{args.read_events}, first page (1 in 4 by sector); {rows:,} entries in all",
                           extra={"small_ms": ps})
    finally:
        for _, store in backends:
            store.engine.dispose()
        if pg_db and admin is not None:
            with admin.connect() as conn:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {pg_db} WITH (FORCE)"))
            admin.dispose()


# ===================================================================================== main

async def run(report: Report, args: argparse.Namespace, tmp: Path) -> None:
    chosen = [k for k in ("freshness", "pipeline", "replay", "read") if getattr(args, k)]
    chosen = chosen or ["freshness", "pipeline", "replay", "read"]
    benches = {"freshness": bench_freshness, "pipeline": bench_pipeline, "replay": bench_replay,
               "read": bench_read}
    for name in chosen:
        t = time.perf_counter()
        await benches[name](report, args, tmp)
        print(f"   ({name} took {time.perf_counter() - t:.0f} s)", flush=True)


def _as_sigint(sig: int, frame: Any) -> None:
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(sig, frame)
    else:
        raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = parser.add_argument_group("sub-benches (none given: all)")
    g.add_argument("--freshness", action="store_true", help="a. accept -> readable latency at fixed rates")
    g.add_argument("--pipeline", action="store_true", help="b. worker throughput vs naive faust and raw floor")
    g.add_argument("--replay", action="store_true", help="c. hub.replay.replay_log throughput")
    g.add_argument("--read", action="store_true", help="d. timeline read latency on SQLite and PostgreSQL")
    parser.add_argument("--rates", default="200,1000", help="a. publish rates, events/s (default 200,1000)")
    parser.add_argument("--fresh-seconds", type=float, default=15.0, help="a. seconds per rate (default 15)")
    parser.add_argument("--worker-fetch-wait-ms", type=int, default=None,
                        help="a. experiment: run the worker with its consumer's fetch_max_wait_ms set to this "
                             "(faust hard-codes 1500 ms; tansu holds a fetch that long when no data is waiting)")
    parser.add_argument("--poll-ms", type=float, default=5.0, help="a. DB poll interval (default 5 ms)")
    parser.add_argument("--pipeline-events", type=int, default=50_000, help="b. events preloaded (default 50000)")
    parser.add_argument("--max-seconds", type=float, default=90.0,
                        help="b. stop watching the hub worker after this long (default 90)")
    parser.add_argument("--py-spy", type=Path, default=None, metavar="PATH",
                        help="b. profile the hub worker with py-spy (collapsed stacks to PATH), print its top entries")
    parser.add_argument("--workers", type=int, default=1,
                        help="b. N > 1: 1 and N worker processes in the same run (bench/pipeline_workers.py)")
    parser.add_argument("--pipeline-pg", action="store_true", help="b. with --workers: project into PostgreSQL")
    parser.add_argument("--no-naive", action="store_true", help="b. leave out the naive faust app")
    parser.add_argument("--naive-seconds", type=float, default=20.0,
                        help="b. measure the naive faust app for this long after its first row (default 20)")
    parser.add_argument("--replay-families", type=int, default=2000, help="c. families (default 2000; goal 10000)")
    parser.add_argument("--replay-events", type=int, default=100, help="c. events per family (default 100)")
    parser.add_argument("--replay-processes", default="auto", metavar="LIST",
                        help="c. replays of the same log, one per entry: worker processes, or auto (hub replay's "
                             "default), e.g. 1,auto (default auto)")
    parser.add_argument("--profile-replay", action="store_true", help="c. print a pyinstrument profile of replay")
    parser.add_argument("--read-families", type=int, default=10_000,
                        help="d. small families (default 10000; goal 100000)")
    parser.add_argument("--read-events", type=int, default=30, help="d. events per small family (default 30)")
    parser.add_argument("--big-events", type=int, default=500, help="d. events of the big family (default 500)")
    parser.add_argument("--read-queries", type=int, default=500, help="d. reads per kind and backend (default 500)")
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
                        help="d. PostgreSQL server (a fresh database is created on it and dropped)")
    parser.add_argument("--no-pg", action="store_true", help="d. SQLite only")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, databases)")
    add_common_args(parser)
    args = parser.parse_args()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _as_sigint)
    configure_logging(os.environ["HUB_LOG_LEVEL"], "json")

    report = Report("timeline: freshness, pipeline, replay, read", argv=["python", *sys.argv])
    print(report.machine_line(), flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-timeline-"))
    t = time.perf_counter()
    try:
        asyncio.run(run(report, args, tmp))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nwall time {time.perf_counter() - t:.0f} s\n")
    report.print()
    report.write_json(args.json)


if __name__ == "__main__":
    main()
