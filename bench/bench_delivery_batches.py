"""Webhook delivery throughput by batch size: K queued shares for one agency, delivered by `deliver_due` passes.

Run: .venv/bin/python bench/bench_delivery_batches.py [--shares 2000] [--batch-max 1,50] [--children 100]
         [--delay 0]
Queues ``--shares`` shares for one agency (7A6) through the sharing step exactly as the worker decides them
(``--children`` children with a paediatric appointment, each report issued by the board's SLT service is
permitted, rule R2), once; the family copies the same decisions make are set aside (delivered) so only
webhook deliveries are timed. Then, for each ``--batch-max``, the same queued shares are restored and the
agency's webhook (a local HTTP endpoint answering 200, ``--delay`` seconds per POST) set to that
``batch_max``; ``deliver_due`` passes (500 claimed a pass, 32 POSTs at a time, as `hub deliver`) run
back to back until every share is delivered. Prints deliveries/s per batch size and its ratio to the first.
The database is a temporary SQLite file (copied from the one the shares were queued in, for each run).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
TMP = Path(tempfile.mkdtemp(prefix="bench-batches-"))
os.environ.setdefault("HUB_LOG_LEVEL", "WARNING")
os.environ.setdefault("HUB_DATA_DIR", str(TMP / "data"))  # the master key of this run's sealed payloads

import httpx  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from bench.harness import Report, add_common_args  # noqa: E402
from hub.core.events import InboundEvent, SubjectRef  # noqa: E402
from hub.db.schema import deliveries  # noqa: E402
from hub.db.store import Store  # noqa: E402
from hub.demo.identifiers import nhs_number  # noqa: E402
from hub.sharing import delivery  # noqa: E402
from hub.sharing.inbox import FAMILY_KINDS  # noqa: E402
from tests.sharing.sharing_support import Feeder, Webhook  # noqa: E402

AGENCY = "7A6"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
DL = deliveries.c


def service(code: str) -> dict[str, object]:
    return {"agency_id": AGENCY, "agency_name": None, "sector": "health", "service_code": code,
            "service_name": f"{code} {AGENCY}"}


def queue(store: Store, shares: int, children: int, now: datetime) -> int:
    """``shares`` reports decided by the sharing step: each a queued share to the agency's paediatric service."""
    feeder = Feeder(store, now)
    idents = [SubjectRef("nhs-number", nhs_number(800_000 + i * 7)) for i in range(children)]
    setup: list[InboundEvent] = []
    for i, ident in enumerate(idents):
        setup += [InboundEvent(record_type="IdentityLinked", sector="hub", source_system="bench-enrol",
                               source_id=f"l-{i}", occurred_at=now - timedelta(days=30), subject=ident,
                               body={"action": "link", "child_id": f"bench-child-{i}", "household_id": f"bench-hh-{i}",
                                     "identifier_system": "nhs-number"}),
                  InboundEvent(record_type="AppointmentBooked", sector="health", source_system="bench-pas",
                               source_id=f"a-{i}", occurred_at=now - timedelta(days=20), subject=ident,
                               body={"service": service("PAED"), "start": now + timedelta(days=10)})]
    reports = [InboundEvent(record_type="ReportIssued", sector="health", source_system="bench-slt", source_id=f"r-{n}",
                            occurred_at=now - timedelta(days=1), subject=idents[n % children], category="clinical",
                            body={"report_id": f"r-{n}", "service": service("SLT"),
                                  "report_kind": "speech_and_language_therapy", "title": "SLT report",
                                  "document_ref": f"docs:{n}"}) for n in range(shares)]
    from hub.stream import projection

    for events in [setup, *(reports[i:i + children] for i in range(0, len(reports), children))]:
        projection.apply(store, feeder.decode(events))
        while feeder.follower.step(now).more:  # the sharing step, as the worker's follower runs it
            pass
    with store.engine.begin() as conn:  # the family's copies: not webhook deliveries, not timed here
        conn.execute(deliveries.update().where(DL.recipient_kind.in_(FAMILY_KINDS), DL.state == "queued")
                     .values(state="delivered", channel="family_view", delivered_at=now))
        return int(conn.execute(sa.select(sa.func.count()).where(DL.agency_id == AGENCY,
                                                                  DL.state == "queued")).scalar_one())


async def drain(store: Store, hook: Webhook, expected: int) -> tuple[float, int, int]:
    """``deliver_due`` passes back to back until every share is delivered: (seconds, passes, POSTs)."""
    passes = delivered = 0
    async with httpx.AsyncClient() as client:
        start = time.perf_counter()
        while delivered < expected:
            stats = await delivery.deliver_due(store, client, escalate=False)
            passes += 1
            delivered += stats.delivered
            if stats.retried or stats.failed or passes > expected + 10:
                raise SystemExit(f"not every share was delivered: {stats}")
        seconds = time.perf_counter() - start
    return seconds, passes, len(hook.requests)


def run(args: argparse.Namespace, report: Report) -> None:
    sizes = [int(s) for s in args.batch_max.split(",")]
    now = datetime.now(UTC) - timedelta(minutes=1)  # every share due at once
    t0 = time.perf_counter()
    store = Store.open(f"sqlite:///{TMP / 'seed.db'}")
    queued = queue(store, args.shares, args.children, now)
    with store.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the file copied for each run
    store.engine.dispose()
    print(f"queued {queued} shares for {AGENCY} in {time.perf_counter() - t0:.1f} s", flush=True)
    first = None
    for size in sizes:
        path = TMP / f"run-{size}.db"
        shutil.copyfile(TMP / "seed.db", path)
        run_store = Store.open(f"sqlite:///{path}", migrate_schema=False)
        hook = Webhook(delay=args.delay)
        try:
            delivery.set_webhook(run_store, AGENCY, hook.url, SECRET, batch_max=size)
            seconds, passes, posts = asyncio.run(drain(run_store, hook, queued))
        finally:
            hook.close()
        name = f"batch_max {size}"
        report.add(name, queued / seconds, "deliveries/s", base=first,
                   note=f"{queued} in {seconds:.2f} s, {posts} POSTs, {passes} passes")
        print(f"{name}: {queued / seconds:,.0f} deliveries/s ({queued} in {seconds:.2f} s, {posts} POSTs, "
              f"{passes} passes)", flush=True)
        first = first or name
        run_store.engine.dispose()


def main() -> None:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--shares", type=int, default=2000, help="queued shares for the one agency (K)")
    parser.add_argument("--batch-max", default="1,50", help="comma list of the webhook's batch_max to compare")
    parser.add_argument("--children", type=int, default=100, help="children the reports are about")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds the endpoint takes to answer each POST")
    args = parser.parse_args()
    report = Report(f"webhook deliveries by batch size: {args.shares} shares, one agency", argv=sys.argv)
    try:
        run(args, report)
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    report.print()
    report.write_json(args.json)


if __name__ == "__main__":
    main()
