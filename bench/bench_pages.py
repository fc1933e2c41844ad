"""Pages bench: how fast the pages answer for a family with 500 entries.

Run: .venv/bin/python bench/bench_pages.py [--entries 500] [--requests 100] [--json PATH] [--profile]

One synthetic family (``bench/population.py``, deterministic) of ``--entries`` events, identity links
included, accepted through the real ingest service onto an embedded broker, then projected, decided and
delivered as the stream worker, its sharing follower and the deliverer do (decode the logged records,
``projection.apply``, ``Follower.step``, ``deliver_due``), into SQLite in a temporary directory. The
household is put on a coordinator's caseload. The app `hub up` serves (API and pages,
``hub.pages.site.create_site``) runs under uvicorn on a free port in this process; an httpx client signs in
with one-time links, as a person does, and times ``--requests`` GETs of each page after 5 untimed:
the coordinator's family page (timelines of every child, team, readiness, consents, shares, alerts), the
caseload, and the parent's own view. p50/p95/p99 in ms, client-side, so HTTP and rendering are included; and
the process's CPU time per request (p50/p95), which other work on a shared machine moves far less.

Goal: p95 < 150 ms for each page.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HUB_LOG_LEVEL", "WARNING")

from bench.harness import Report, add_common_args, percentiles
from bench.population import Population
from hub.core.settings import Settings
from hub.db.keyvault import sealed_serde
from hub.family.enrolment import Enrolment
from hub.governance.auth import Principal
from hub.ingest.services import Services
from hub.kafka.broker import EmbeddedBroker, free_port
from hub.kafka.topics import ensure_topics
from hub.pages import signin
from hub.pages.site import create_site
from hub.sharing.delivery import deliver_due
from hub.sharing.follower import Follower
from hub.stream import projection

ROOT = Path(__file__).resolve().parents[1]
COORDINATOR = "cc-bench"


async def load(services: Services, entries: int) -> tuple[str, int]:
    """Accept one family's events, then project, decide and deliver them; (household, entries)."""
    pop = Population(1, entries, seed=46, prefix="pages", id_offset=700_000)
    events = list(pop.events())
    for i in range(0, len(events), 200):
        await services.ingest.accept(events[i:i + 200])
    serde = sealed_serde(services.catalogue, services.settings, services.store)

    def project() -> None:
        for batch in services.store.iter_log(batch=1000):
            decoded = [(d.record_type, services.catalogue.writer(d.record_type).ce_type, d.record)
                       for d in (serde.decode(r.value) for r in batch)]
            projection.apply(services.store, decoded)
        follower = Follower(services.store, "bench-pages")
        while follower.step().more:
            pass

    await asyncio.to_thread(project)
    async with httpx.AsyncClient() as client:
        await deliver_due(services.store, client)
    household = pop.family(0).household_id
    Enrolment(services.store, services.ingest, services.vault).assign(COORDINATOR, household, by="bench")
    return household, len(events)


def signed_in(base: str, services: Services, principal: Principal) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30)
    token = signin.issue(services.store, principal, 15)
    page = client.get(f"/sign-in/{token}")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf, page.text[:500]
    assert client.post(f"/sign-in/{token}", data={"csrf": csrf.group(1)}).status_code == 303
    return client


def timed(client: httpx.Client, path: str, n: int) -> tuple[list[float], list[float]]:
    """Wall time of each request as the client sees it, and the process's CPU time it took (server, client and
    anything else in this process: far less moved by other work on the machine than the wall time)."""
    for _ in range(5):
        assert client.get(path).status_code == 200, path
    samples, cpu = [], []
    for _ in range(n):
        t, c = time.perf_counter(), time.process_time()
        r = client.get(path)
        samples.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
        assert r.status_code == 200
    return samples, cpu


def profile(services: Services, household: str) -> None:
    """What each page's data costs, in this thread: pyinstrument (``pip install pyinstrument``) over 20 calls of the
    functions the family page, the caseload and the own view call, after 3 untimed."""
    from pyinstrument import Profiler  # a developer's tool, not a dependency of the hub

    from hub.pages import gather
    from hub.pages.family import own_view

    coordinator = Principal(COORDINATOR, "coordinator")
    parent = Principal("parent-bench", "parent", household=household)
    for name, call in (("family page", lambda: gather.family(services.store, coordinator, household)),
                       ("caseload", lambda: gather.caseload(services.store, coordinator, [household])),
                       ("own view", lambda: own_view(services.store, services.vault, parent, household))):
        for _ in range(3):
            call()
        profiler = Profiler(interval=0.0005)
        with profiler:
            for _ in range(20):
                call()
        print(f"== {name}: 20 calls")
        print(profiler.output_text(unicode=False, color=False))


async def main(args: argparse.Namespace) -> Report:
    report = Report("pages", argv=sys.argv)
    with tempfile.TemporaryDirectory(prefix="bench-pages-") as tmp:
        broker = EmbeddedBroker().start()
        settings = Settings(kafka_bootstrap=broker.bootstrap, kafka_embedded=True, data_dir=Path(tmp) / "data",
                            schema_dir=ROOT / "schemas", pseudonym_key="bench-pages-key-0123456789abcdef",
                            session_secure_cookie=False, log_level="WARNING")  # plain HTTP on 127.0.0.1
        await ensure_topics(settings)
        services = Services.build(settings)
        await services.start()
        try:
            household, n = await load(services, args.entries)
            if args.profile:
                await asyncio.to_thread(profile, services, household)
            port = free_port()
            server = uvicorn.Server(uvicorn.Config(create_site(services), host="127.0.0.1", port=port,
                                                   log_level="warning", lifespan="off"))
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            while not server.started:
                await asyncio.sleep(0.02)
            base = f"http://127.0.0.1:{port}"
            coordinator = signed_in(base, services, Principal(COORDINATOR, "coordinator"))
            parent = signed_in(base, services, Principal("parent-bench", "parent", household=household))
            for name, client, path in (("family page (coordinator)", coordinator, f"/households/{household}"),
                                       ("caseload (coordinator)", coordinator, "/caseload"),
                                       ("own view (parent)", parent, "/family")):
                samples, cpu = await asyncio.to_thread(timed, client, path, args.requests)
                for p, value in percentiles(samples).items():
                    report.add(f"{name} {p}", value, "ms", note=f"{n} events, {args.requests} requests"
                               if p == "p50" else "")
                for p, value in percentiles(cpu).items():
                    if p in ("p50", "p95"):
                        report.add(f"{name} cpu {p}", value, "ms", note="process CPU per request" if p == "p50" else "")
            server.should_exit = True
            thread.join(10)
        finally:
            await services.stop()
            services.store.engine.dispose()
            broker.stop()
    return report


if __name__ == "__main__":
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--entries", type=int, default=500)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--profile", action="store_true", help="first profile the pages' data calls (pyinstrument)")
    arguments = parser.parse_args()
    logging.getLogger("uvicorn").setLevel(logging.WARNING)
    result = asyncio.run(main(arguments))
    result.print()
    result.write_json(arguments.json)
