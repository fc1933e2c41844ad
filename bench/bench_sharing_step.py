"""The sharing step alone, in-process: what deciding costs per report, without broker, worker or webhook.

Run: .venv/bin/python bench/bench_sharing_step.py [--children 200] [--reports 2000] [--pass-size 100] [--memo 0,10000]
         [--database-url postgresql+psycopg://...]

A temporary SQLite database (or the given one, which must be empty) gets ``--children`` children, each
linked and with a paediatric appointment (same health board as the SLT service that writes the
reports, so every report is permitted, rule R2). Then ``--reports`` SLT reports, spread over the
children, are projected and decided in passes of ``--pass-size`` — the projection as the worker runs
it (``hub.projection.apply``) and the sharing step as its follower runs it (``Follower.step`` over the
change feed). A second run repeats it with a directive per child naming a professional ("never to
Dr Bowen"), so the named-professional decisions are measured too. Figures: ms per report for each.

Each run is made once per size in ``--memo`` (default ``0,10000``): the records memo of the sharing step
(:mod:`hub.sharing.record_memo`) off, then at its default size, so the two are compared in the same
process on the same machine; with a memo, what it holds per entry is measured with ``tracemalloc``.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import Report
from consent import Directive, DirectiveDecision, Grantor, Provision, Purpose, Scope, Sector
from hub.core.events import InboundEvent, SubjectRef
from hub.core.logging import configure_logging
from hub.db.store import Store
from hub.demo.identifiers import nhs_number
from hub.sharing.record_memo import RecordMemo, child_records
from hub.stream import projection
from tests.sharing.sharing_support import Feeder, consent_event

SLT = {"agency_id": "7A6", "agency_name": None, "sector": "health", "service_code": "SLT",
       "service_name": "Speech and language therapy, Serennu"}
PAEDS = {"agency_id": "7A6", "agency_name": None, "sector": "health", "service_code": "PAED",
         "service_name": "Community paediatrics, Serennu"}
BOWEN = {"id": "paed-bowen", "role": "registrar", "display_name": "Dr Bowen"}
MEMORY: list[tuple[int, int]] = []  # (entries, bytes) the memo held, per run with a memo


def run_once(url: str, args: argparse.Namespace, named: bool, memo_records: int) -> tuple[float, float, int, float]:
    """(projection ms / report, sharing ms / report, decisions made, share of entries the memo answered)."""
    store = Store.open(url)
    now = datetime.now(UTC)
    feeder = Feeder(store, now)
    memo = feeder.follower.memo = RecordMemo(memo_records)
    idents = [SubjectRef("nhs-number", nhs_number(700_000 + i * 7)) for i in range(args.children)]
    setup: list[InboundEvent] = []
    for i, ident in enumerate(idents):
        setup.append(InboundEvent(record_type="IdentityLinked", sector="hub", source_system="bench-enrol",
                                  source_id=f"l-{i}", occurred_at=now - timedelta(days=30), subject=ident,
                                  body={"action": "link", "child_id": f"c-{i}", "household_id": f"h-{i}",
                                        "identifier_system": "nhs-number"}))
        setup.append(InboundEvent(record_type="AppointmentBooked", sector="health", source_system="bench-pas",
                                  source_id=f"a-{i}", occurred_at=now - timedelta(days=20), subject=ident,
                                  body={"service": PAEDS, "professional": BOWEN, "start": now + timedelta(days=10)}))
        if named:
            care = Scope(sectors=frozenset({Sector.HEALTH}), purposes=frozenset({Purpose.DIRECT_CARE}))
            d = Directive(id=f"d-{i}", child_id=f"c-{i}", made_by="parent", made_by_role=Grantor.PARENT,
                          made_at=now - timedelta(days=19), decision=DirectiveDecision.PERMIT, scope=care,
                          exceptions=(Provision(DirectiveDecision.DENY, Scope(
                              sectors=care.sectors, purposes=care.purposes,
                              professional_ids=frozenset({BOWEN["id"]}))),))
            setup.append(consent_event(d, SubjectRef("nhs-number", ident.value)))
    feeder.feed(setup, now)
    reports = [InboundEvent(record_type="ReportIssued", sector="health", source_system="bench-slt", source_id=f"r-{k}",
                            occurred_at=now - timedelta(minutes=1), subject=idents[k % args.children],
                            category="clinical", body={"report_id": f"r-{k}", "service": SLT,
                                                       "report_kind": "speech_and_language_therapy",
                                                       "title": "SLT report"})
               for k in range(args.reports)]
    batches = [feeder.decode(reports[i:i + args.pass_size]) for i in range(0, args.reports, args.pass_size)]
    projecting = sharing = 0.0
    decisions = 0
    for b in batches:
        t = time.perf_counter()
        projection.apply(store, b)
        projecting += time.perf_counter() - t
        t = time.perf_counter()
        decisions += feeder.follow(now).decisions
        sharing += time.perf_counter() - t
    if memo_records:
        memory_per_entry(store, args.children)
    store.engine.dispose()
    answered = memo.hits / max(1, memo.hits + memo.misses)
    return projecting / args.reports * 1000, sharing / args.reports * 1000, decisions, answered


def memory_per_entry(store: Store, children: int) -> None:
    """What the memo holds per entry once every child's record is in it (tracemalloc: held, then let go)."""
    homes = [(f"h-{i}", f"c-{i}") for i in range(children)]
    tracemalloc.start()
    memo = RecordMemo(10**9)
    child_records(store, homes, memo)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0]
    n = len(memo)
    memo.clear()
    gc.collect()
    freed = held - tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    MEMORY.append((n, freed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=200)
    parser.add_argument("--reports", type=int, default=2000)
    parser.add_argument("--pass-size", type=int, default=100)
    parser.add_argument("--database-url", default=None, help="an empty database (default: temporary SQLite)")
    parser.add_argument("--memo", default="0,10000",
                        help="sizes of the records memo to run with, comma-separated (0: none, whole records read)")
    args = parser.parse_args()
    configure_logging("WARNING", "console")
    report = Report("sharing step in-process: report projected → decided", argv=sys.argv)
    sizes = [int(x) for x in args.memo.split(",")]
    for named in (False, True):
        label = "with a named-professional directive" if named else "service decisions only"
        for size in sizes:
            url = args.database_url or f"sqlite:///{tempfile.mkdtemp(prefix='bench-step-')}/hub.db"
            if args.database_url and (named or size != sizes[0]):
                break  # one run per given database: it must start empty
            proj, share, n, answered = run_once(url, args, named, size)
            report.add(f"projection ({label}, memo {size})", proj, "ms", note="per report")
            report.add(f"sharing step ({label}, memo {size})", share, "ms",
                       note=f"per report; {n} decisions; {answered:.0%} of entries from the memo")
    report.print()
    for n, freed in MEMORY:
        print(f"memo memory: {n} entries held {freed / 1024:.0f} KiB, {freed / max(1, n):.0f} bytes an entry")


if __name__ == "__main__":
    main()
