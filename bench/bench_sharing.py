"""Report issued (accepted by the hub) → delivered at the agency's webhook, at a steady event rate.

Run: /work/venv/bin/python bench/bench_sharing.py [--rate 200] [--seconds 15] [--children 200]
         [--delivery-mode process|worker]
Starts the embedded stack pieces the path needs: the embedded broker, a temporary SQLite database, one
stream worker process (``hub worker``: projection and the sharing step), with ``--delivery-mode process``
(the default, as ``hub up`` runs it) one ``hub deliver`` process for the deliveries, or with ``worker`` the
deliveries in the worker too (``HUB_DELIVERY_MODE=worker``), and a local HTTP endpoint as the paediatric
service's webhook. Children are enrolled first, each with a
paediatric appointment in the same health board as the reporting SLT service, so every report is
permitted (rule R2) and goes to the webhook. Reports are then accepted at ``--rate`` per second
through ``IngestService.accept`` (batches every 50 ms); latency = webhook arrival − acceptance.
Goal: p99 < 1 s at 200 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HUB_LOG_LEVEL", "WARNING")

from bench.harness import Report, add_common_args, percentiles
from hub.core.events import InboundEvent, SubjectRef
from hub.core.settings import Settings
from hub.db.store import Store
from hub.demo.identifiers import nhs_number
from hub.ingest.services import Services
from hub.kafka.broker import EmbeddedBroker
from hub.kafka.topics import ensure_topics
from tests.sharing.sharing_support import Webhook
from tests.support import hub_env, spawn, stop, wait_until

SLT = {"agency_id": "7A6", "agency_name": None, "sector": "health", "service_code": "SLT",
       "service_name": "Speech and language therapy, Serennu"}
PAEDS = {"agency_id": "7A6", "agency_name": None, "sector": "health", "service_code": "PAED",
         "service_name": "Community paediatrics, Serennu"}


async def run(args: argparse.Namespace, report: Report) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-sharing-"))
    hook = Webhook()
    arrivals: dict[str, float] = {}
    hooks_file = tmp / "webhooks.json"
    hooks_file.write_text(json.dumps({"7A6": {"url": hook.url, "secret": "bench-secret"}}))
    broker = EmbeddedBroker().start()
    settings = Settings(kafka_bootstrap=broker.bootstrap, kafka_embedded=True, data_dir=tmp / "data",
                        database_url=f"sqlite:///{tmp / 'hub.db'}", pseudonym_key="bench-key-0123456789abcdef")
    await ensure_topics(settings)
    Store.open(settings.effective_database_url)
    env = hub_env(kafka_bootstrap=broker.bootstrap, kafka_embedded="true", data_dir=tmp / "data",
                  database_url=settings.effective_database_url, worker_name="bench", webhooks_file=hooks_file,
                  pseudonym_key="bench-key-0123456789abcdef", log_level="WARNING", delivery_mode=args.delivery_mode)
    services = Services.build(settings)  # before the worker: both probe the SQLite directory on open
    worker = spawn(["worker"], env, tmp / "worker.log")
    deliverer = spawn(["deliver"], env, tmp / "deliver.log") if args.delivery_mode == "process" else None
    await services.start()
    now = datetime.now(UTC)
    try:
        idents = [SubjectRef("nhs-number", nhs_number(900_000 + i * 7)) for i in range(args.children)]
        setup: list[InboundEvent] = []
        for i, ident in enumerate(idents):
            setup.append(InboundEvent(record_type="IdentityLinked", sector="hub", source_system="bench-enrol",
                                      source_id=f"l-{i}", occurred_at=now - timedelta(days=30), subject=ident,
                                      body={"action": "link", "child_id": f"bench-child-{i}",
                                            "household_id": f"bench-hh-{i}", "identifier_system": "nhs-number"}))
            setup.append(InboundEvent(record_type="AppointmentBooked", sector="health", source_system="bench-pas",
                                      source_id=f"a-{i}", occurred_at=now - timedelta(days=20), subject=ident,
                                      body={"service": PAEDS, "start": now + timedelta(days=10)}))
        for i in range(0, len(setup), 500):
            await services.ingest.accept(setup[i:i + 500])
        wait_until(services.store.workers, 60, "worker heartbeat")
        await asyncio.sleep(3)

        total = int(args.rate * args.seconds)
        accepted: dict[str, float] = {}
        per_tick = max(1, round(args.rate * 0.05))
        start = time.perf_counter()
        sent = 0
        while sent < total:
            batch = []
            for k in range(min(per_tick, total - sent)):
                n = sent + k
                ident = idents[n % len(idents)]
                batch.append(InboundEvent(
                    record_type="ReportIssued", sector="health", source_system="bench-slt", source_id=f"r-{n}",
                    occurred_at=datetime.now(UTC), subject=ident, category="clinical",
                    body={"report_id": f"r-{n}", "service": SLT, "report_kind": "speech_and_language_therapy",
                          "title": "SLT report", "document_ref": f"docs:{n}"}))
            await services.ingest.accept(batch)
            t = time.time()
            for e in batch:
                accepted[e.source_id] = t
            sent += len(batch)
            delay = start + sent / args.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        send_seconds = time.perf_counter() - start

        def collect() -> bool:
            for q in hook.requests[len(arrivals):]:
                body = json.loads(q["body"])
                arrivals.setdefault(body["information"]["report_id"], q["at"])
            return len(arrivals) >= total

        ok = True
        try:
            wait_until(collect, args.seconds + 60, "every report at the webhook")
        except AssertionError:
            ok = False
        lat = [arrivals[k] - accepted[k] for k in accepted if k in arrivals]
        pct = percentiles(lat)
        report.add("offered rate", total / send_seconds, "ev/s",
                   note=f"{total} ReportIssued over {send_seconds:.1f} s; deliveries: {args.delivery_mode} mode")
        report.add("delivered", len(lat), "count", note="all" if ok else f"of {total} (timed out)")
        report.add("p50 accepted → webhook", pct["p50"] * 1000, "ms")
        report.add("p95 accepted → webhook", pct["p95"] * 1000, "ms")
        report.add("p99 accepted → webhook", pct["p99"] * 1000, "ms", note="goal < 1000 ms")
        report.add("max accepted → webhook", max(lat) * 1000 if lat else float("nan"), "ms")
    finally:
        await services.stop()
        stop(worker)
        if deliverer is not None:
            stop(deliverer)
        broker.stop()
        hook.close()


def main() -> None:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--children", type=int, default=200)
    parser.add_argument("--delivery-mode", choices=("process", "worker"), default="process",
                        help="process: `hub deliver` delivers (as `hub up` runs it); worker: the worker delivers too")
    args = parser.parse_args()
    report = Report("sharing: report accepted → delivered at a webhook", argv=sys.argv)
    asyncio.run(run(args, report))
    report.print()
    report.write_json(args.json)


if __name__ == "__main__":
    main()
