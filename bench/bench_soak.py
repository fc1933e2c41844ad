"""Soak: the hub under a steady load through `hub up` for a bounded time, sampled every interval.

Run: .venv/bin/python bench/bench_soak.py [--db postgresql|sqlite] [--rate 500] [--seconds 600] [--interval 30]

One run starts ``python -m hub.cli up`` (embedded broker, ``--workers`` stream workers, a deliverer, the API
on a free port) on a fresh data directory and database (SQLite in the temporary directory, or a fresh
PostgreSQL database ``soak_<random>`` on ``--pg-url``, dropped afterwards), migrated first as `hub migrate`
does. Families come from ``bench/population.py``; their identity links are accepted first (in this
process, through the hub's own ingest service against the stack's broker: agencies cannot send links) and
projected. Then the families' events are POSTed to ``/v1/events`` (admin token, requests every 100 ms
holding the events due, at most 16 in flight) at ``--rate`` events/s for ``--seconds``.

Every ``--interval`` seconds the bench records: RSS of the ``hub up`` process (it serves the API) and of the
workers, deliverer and broker (its children); ``hub_consumer_lag`` (summed over topics),
``hub_ingest_unpublished`` and ``hub_sharing_lag`` from ``GET /metrics`` (sampled by the API every
``HUB_METRICS_INTERVAL`` = 5 s here); freshness p50/p99 of the events accepted in that interval (the POST's
answer → the entry's ``added`` row in the change feed, ``timeline_changes``, which the projection writes in
the entry's own transaction: a poller reads the feed's new rows every 50 ms, so what it costs follows the
hub's throughput, not its backlog); answers other than 2xx (and transport errors) in the interval; events
sent; the 1-minute load average (the machine is shared). At the end: the table, and one verdict per series
(flat or growing, with the least-squares slope per minute; the first sample is left out of the fit as
warm-up). The final table's freshness counts every event of an interval seen by the end of the run (up to
``--drain`` s after the last send); the live lines count those seen by the sample.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, before site-packages

import httpx
import sqlalchemy as sa

from bench import soak_probes as probes
from bench.harness import REPO_ROOT, machine_info, paced, percentiles
from bench.population import Population
from hub.core.events import InboundEvent
from hub.core.settings import Settings, bootstrap_file
from hub.db.schema import identity_links, timeline_changes
from hub.db.store import Store
from hub.governance.auth import TokenService
from hub.ingest.services import Services
from hub.kafka.broker import free_port

KEY = "soak-key-0123456789abcdef"
JWT = "soak-jwt-key-0123456789abcdef0123456789"
METRICS_TOKEN = "soak-metrics-token"
C = timeline_changes.c


def jsonable(v: Any) -> Any:
    if isinstance(v, datetime | date):
        return v.isoformat()
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [jsonable(x) for x in v]
    return v


def event_json(ev: InboundEvent) -> dict[str, Any]:
    return {"record_type": ev.record_type, "sector": ev.sector, "source_system": ev.source_system,
            "source_id": ev.source_id, "source_version": ev.source_version, "occurred_at": ev.occurred_at.isoformat(),
            "subject": {"system": ev.subject.system, "value": ev.subject.value}, "category": ev.category,
            "status": ev.status, "body": jsonable(ev.body)}


class Window:
    """What happened between two samples."""

    def __init__(self) -> None:
        self.fresh: list[float] = []
        self.errors: dict[str, int] = {}
        self.sent = 0
        self.refused = 0  # events in requests answered other than 2xx


class Soak:
    def __init__(self, args: argparse.Namespace, store: Store, base: str, token: str) -> None:
        self.args = args
        self.store = store
        self.feed_seq = 0  # the change feed read so far (the poller's position)
        self.base = base
        self.headers = {"Authorization": f"Bearer {token}"}
        self.pending: dict[str, tuple[float, Window]] = {}  # event id -> (answered at, its window)
        self.window = Window()
        self.sending = True
        self.rows: list[dict[str, Any]] = []
        self.windows: list[Window] = []

    def final_rows(self) -> list[dict[str, Any]]:
        """The samples with each interval's freshness from every event of it seen by the end of the run."""
        return [with_freshness(r, w) for r, w in zip(self.rows, self.windows, strict=True)]

    # ------------------------------------------------------------------ load
    async def post(self, client: httpx.AsyncClient, batch: list[dict[str, Any]]) -> None:
        window = self.window
        window.sent += len(batch)
        try:
            r = await client.post("/v1/events", json=batch, headers=self.headers)
        except httpx.HTTPError as exc:
            window.errors[type(exc).__name__] = window.errors.get(type(exc).__name__, 0) + 1
            window.refused += len(batch)
            return
        if r.status_code // 100 != 2:
            window.errors[str(r.status_code)] = window.errors.get(str(r.status_code), 0) + 1
            window.refused += len(batch)
            return
        done = time.perf_counter()
        for a in r.json():
            if a["status"] == "accepted":
                self.pending[a["event_id"]] = (done, window)

    async def send(self, client: httpx.AsyncClient, events: Iterator[InboundEvent]) -> int:
        rate = self.args.rate
        sent = await paced(int(rate * self.args.seconds), rate,
                           lambda a, b: self.post(client, [event_json(next(events)) for _ in range(b - a)]), tick=0.1)
        self.sending = False
        return sent

    # ------------------------------------------------------------------ freshness
    def _projected(self) -> list[str]:
        """The entries added since the last look: the change feed's new ``added`` rows (not a query of every
        outstanding id, whose cost would grow with the hub's backlog and add to it)."""
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(C.seq, C.event_id, C.kind).where(C.seq > self.feed_seq)
                                .order_by(C.seq).limit(50_000)).all()
        if rows:
            self.feed_seq = rows[-1].seq
        return [r.event_id for r in rows if r.kind == "added"]

    async def poll(self, drain_s: float) -> None:
        clock = time.perf_counter
        drain_until: float | None = None
        while self.pending or self.sending:
            if not self.sending:
                drain_until = drain_until or clock() + drain_s
                if clock() > drain_until:
                    break
            if self.pending:
                seen_at = clock()
                for eid in await asyncio.to_thread(self._projected):
                    if eid in self.pending:
                        t, window = self.pending.pop(eid)
                        window.fresh.append(max(0.0, seen_at - t))
            await asyncio.sleep(0.05)

    # ------------------------------------------------------------------ samples
    async def sample(self, client: httpx.AsyncClient, hub_pid: int, t0: float) -> None:
        window, self.window = self.window, Window()
        rss = probes.rss_by_role(hub_pid)
        try:
            r = await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
            m = probes.parse_metrics(r.text) if r.status_code == 200 else {}
        except httpx.HTTPError:
            m = {}
        await asyncio.sleep(self.args.freshness_grace)  # the window's last events have time to be seen
        row = {"t": round(time.perf_counter() - t0, 1), "worker_mb": rss["worker"], "api_mb": rss["api"],
               "deliverer_mb": rss["deliverer"], "broker_mb": rss["broker"],
               "lag": m.get("hub_consumer_lag", -1), "unpublished": m.get("hub_ingest_unpublished", -1),
               "sharing_lag": m.get("hub_sharing_lag", -1), "sent": window.sent,
               "refused": window.refused, "non_2xx": sum(window.errors.values()),
               "errors": dict(window.errors), "load": probes.load_average(), "pending": len(self.pending)}
        self.rows.append(row)
        self.windows.append(window)
        print(fmt_row(with_freshness(row, window)), flush=True)

    async def sampler(self, client: httpx.AsyncClient, hub_pid: int, t0: float) -> None:
        k = 1
        while self.sending:
            await asyncio.sleep(max(0.0, t0 + k * self.args.interval - time.perf_counter()))
            k += 1
            if self.sending:
                await self.sample(client, hub_pid, t0)


def with_freshness(row: dict[str, Any], window: Window) -> dict[str, Any]:
    p = percentiles([f * 1000 for f in window.fresh]) if window.fresh else {"p50": 0.0, "p99": 0.0}
    return {**row, "fresh_p50": p["p50"], "fresh_p99": p["p99"], "seen": len(window.fresh)}


HEADER = (f"{'t s':>6} {'worker MB':>9} {'API MB':>7} {'deliv MB':>8} {'broker MB':>9} {'lag':>7} {'unpub':>6} "
          f"{'share lag':>9} {'fresh p50':>9} {'fresh p99':>9} {'seen':>6} {'sent':>6} {'non-2xx':>7} {'load':>5}")


def fmt_row(r: dict[str, Any]) -> str:
    return (f"{r['t']:>6.0f} {r['worker_mb']:>9.1f} {r['api_mb']:>7.1f} {r['deliverer_mb']:>8.1f} "
            f"{r['broker_mb']:>9.1f} "
            f"{r['lag']:>7.0f} {r['unpublished']:>6.0f} {r['sharing_lag']:>9.0f} {r['fresh_p50']:>7.0f}ms "
            f"{r['fresh_p99']:>7.0f}ms {r['seen']:>6} {r['sent']:>6} {r['non_2xx']:>7} {r['load']:>5.2f}")


def verdicts(rows: list[dict[str, Any]], rate: float) -> list[probes.Verdict]:
    """One per Done-when series, leaving out the first sample (warm-up)."""
    use = rows[1:] if len(rows) > 2 else rows
    ts = [r["t"] for r in use]

    def col(k: str) -> list[float]:
        return [float(r[k]) for r in use]

    def rss_allowed(k: str) -> float:
        return max(10.0, 0.05 * (sum(col(k)) / len(use)))  # 5 % of the mean or 10 MB

    p99 = col("fresh_p99")
    return [probes.judge("worker RSS", "MB", ts, col("worker_mb"), rss_allowed("worker_mb")),
            probes.judge("API (hub up) RSS", "MB", ts, col("api_mb"), rss_allowed("api_mb")),
            probes.judge("consumer lag", "msgs", ts, col("lag"), rate * 2),  # two seconds' worth
            probes.judge("hub_ingest_unpublished", "events", ts, col("unpublished"), rate * 2),
            probes.judge("sharing lag", "changes", ts, col("sharing_lag"), rate * 2),
            probes.judge("freshness p99", "ms", ts, p99, max(100.0, 0.5 * sorted(p99)[len(p99) // 2]))]


def hub_env(args: argparse.Namespace, data: Path, url: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update({"HUB_DATA_DIR": str(data), "HUB_DATABASE_URL": url, "HUB_PSEUDONYM_KEY": KEY, "HUB_JWT_KEY": JWT,
                "HUB_METRICS_TOKEN": METRICS_TOKEN, "HUB_METRICS_INTERVAL": "5", "HUB_API_PORT": str(port),
                "HUB_LOG_LEVEL": os.environ.get("BENCH_HUB_LOG_LEVEL", "WARNING"),
                "PYTHONPATH": str(REPO_ROOT)})
    for setting in args.set:
        name, _, value = setting.partition("=")
        if not name.startswith("HUB_") or not _:
            raise SystemExit(f"--set takes HUB_NAME=value, not {setting!r}")
        env[name] = value
    return env


async def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=base, timeout=2) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"hub up exited with status {proc.returncode} during start-up")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get("/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.5)
    raise RuntimeError(f"hub up not ready within {timeout:.0f} s")


async def enrol(settings: Settings, pop: Population) -> int:
    """Accept the families' identity links through the hub's ingest service and wait for their projection."""
    services = Services.build(settings, migrate_schema=False)
    await services.start()
    links = list(pop.links())
    try:
        for i in range(0, len(links), 500):
            await services.ingest.accept(links[i:i + 500])
    finally:
        await services.stop()
    store = Store.open(settings.effective_database_url, migrate_schema=False)
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            with store.engine.connect() as conn:
                if conn.execute(sa.select(sa.func.count()).select_from(identity_links)).scalar_one() >= len(links):
                    return len(links)
            await asyncio.sleep(0.5)
    finally:
        store.engine.dispose()
    raise RuntimeError("identity links not projected within 180 s")


async def soak(args: argparse.Namespace, tmp: Path, url: str) -> list[dict[str, Any]]:
    data, port = tmp / "hub", free_port()
    data.mkdir()
    env = hub_env(args, data, url, port)
    Store.open(url).engine.dispose()  # as `hub migrate` does before the hub starts
    log = (tmp / "hub-up.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "up", "--workers", str(args.workers), "--port",
                             str(port)], env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        t = time.perf_counter()
        await wait_ready(base, proc, 180)
        settings = Settings(data_dir=data, database_url=url, pseudonym_key=KEY, jwt_key=JWT,
                            kafka_bootstrap=bootstrap_file(Settings(data_dir=data)).read_text().strip(),
                            log_level="WARNING")
        families = max(50, int(args.rate * args.seconds * 1.05) // 95 + 1)
        pop = Population(families, 100, seed=19, prefix="sk")
        print(f"hub up ready in {time.perf_counter() - t:.1f} s (pid {proc.pid}); enrolling {families:,} families ...",
              flush=True)
        n_links = await enrol(settings, pop)
        print(f"{n_links:,} identity links projected; soak at {args.rate:,.0f} ev/s for {args.seconds:.0f} s, "
              f"a sample every {args.interval:.0f} s", flush=True)
        token = TokenService(settings).create("soak-bench", "admin", ttl=int(args.seconds) + 3600)
        store = Store.open(url, migrate_schema=False)
        events = (e for e in pop.events() if e.record_type != "IdentityLinked")
        run = Soak(args, store, base, token)
        print(HEADER, flush=True)
        async with httpx.AsyncClient(base_url=base, timeout=60,
                                     limits=httpx.Limits(max_connections=20)) as client:
            t0 = time.perf_counter()
            sampler = asyncio.create_task(run.sampler(client, proc.pid, t0))
            poller = asyncio.create_task(run.poll(args.drain))
            sent = await run.send(client, events)
            elapsed = time.perf_counter() - t0
            await sampler
            if elapsed - (run.rows[-1]["t"] if run.rows else 0.0) >= args.interval / 2:
                await run.sample(client, proc.pid, t0)  # the last interval, when not too short to judge
            await poller
        store.engine.dispose()
        print(f"sent {sent:,} events in {elapsed:.1f} s ({sent / elapsed:,.0f} ev/s); "
              f"{len(run.pending):,} accepted events not on the timeline {args.drain:.0f} s after the last send",
              flush=True)
        return run.final_rows()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--rate", type=float, default=500.0, help="events/s (default 500)")
    parser.add_argument("--seconds", type=float, default=600.0, help="load duration (default 600)")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between samples (default 30)")
    parser.add_argument("--workers", type=int, default=1, help="stream workers of `hub up` (default 1)")
    parser.add_argument("--freshness-grace", type=float, default=2.0,
                        help="seconds a sample waits for its interval's events before its freshness figure")
    parser.add_argument("--drain", type=float, default=60.0, help="seconds to wait for the last events")
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the samples as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (hub-up.log, database)")
    parser.add_argument("--set", action="append", default=[], metavar="HUB_NAME=VALUE",
                        help="a hub setting for the stack (repeatable), e.g. HUB_SHARING_MEMO_RECORDS=400000")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    admin, pg_db = None, None
    if args.db == "postgresql":
        admin = sa.create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
        pg_db = f"soak_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {pg_db}"))
        url = args.pg_url.rsplit("/", 1)[0] + f"/{pg_db}"
    else:
        url = f"sqlite:///{tmp / 'hub.db'}"
    m = machine_info()
    print(f"machine: {m['cpu_count']} CPUs, {m['cpu_model']}; load average at start "
          f"{' / '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.db}")
    if args.set:
        print(f"settings: {' '.join(args.set)}")
    try:
        rows = asyncio.run(soak(args, tmp, url))
    finally:
        if admin is not None and pg_db is not None and not args.keep:
            with admin.connect() as conn:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {pg_db} WITH (FORCE)"))
        if admin is not None:
            admin.dispose()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("\n" + HEADER)
    for r in rows:
        print(fmt_row(r))
    errors: dict[str, int] = {}
    for r in rows:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    print(f"\nnon-2xx answers and transport errors over the run: {sum(errors.values())} {errors or ''}, holding "
          f"{sum(r['refused'] for r in rows):,} events; {sum(r['seen'] for r in rows):,} events accepted and seen")
    judged = verdicts(rows, args.rate)
    for v in judged:
        print(v.line())
    use = rows[1:] if len(rows) > 2 else rows
    r = probes.correlation([x["worker_mb"] for x in use], [x["lag"] for x in use])
    print(f"worker RSS vs consumer lag: correlation {r:+.2f} (growth with lag = backlog; growth without = leak)")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
                                         "verdicts": [v.__dict__ | {"word": v.word} for v in judged],
                                         "machine": m}, indent=2))


if __name__ == "__main__":
    main()
