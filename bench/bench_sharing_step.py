"""The sharing step alone, in-process: what deciding costs per report, without broker, worker or webhook.

Run: /work/venv/bin/python bench/bench_sharing_step.py [--children 200] [--reports 2000] [--pass-size 100]
         [--database-url postgresql+psycopg://...]

A temporary SQLite database (or the given one, which must be empty) gets ``--children`` children, each
linked and with a paediatric appointment (same health board as the SLT service that writes the
reports, so every report is permitted, rule R2). Then ``--reports`` SLT reports, spread over the
children, are projected and decided in passes of ``--pass-size`` — the projection as the worker runs
it (``hub.projection.apply``) and the sharing step as its follower runs it (``Follower.step`` over the
change feed). A second run repeats it with a directive per child naming a professional ("never to
Dr Bowen"), so the named-professional decisions are measured too. Figures: ms per report for each.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import Report
from consent import Directive, DirectiveDecision, Grantor, Provision, Purpose, Scope, Sector
from hub.core.events import InboundEvent, SubjectRef
from hub.core.logging import configure_logging
from hub.db.store import Store
from hub.demo.identifiers import nhs_number
from hub.stream import projection
from tests.sharing.sharing_support import Feeder, consent_event

SLT = {"agency_id": "7A6", "agency_name": None, "sector": "health", "service_code": "SLT",
       "service_name": "Speech and language therapy, Serennu"}
PAEDS = {"agency_id": "7A6", "agency_name": None, "sector": "health", "service_code": "PAED",
         "service_name": "Community paediatrics, Serennu"}
BOWEN = {"id": "paed-bowen", "role": "registrar", "display_name": "Dr Bowen"}


def run_once(url: str, args: argparse.Namespace, named: bool) -> tuple[float, float, int]:
    """(projection ms / report, sharing ms / report, decisions made)."""
    store = Store.open(url)
    now = datetime.now(UTC)
    feeder = Feeder(store, now)
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
    store.engine.dispose()
    return projecting / args.reports * 1000, sharing / args.reports * 1000, decisions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=200)
    parser.add_argument("--reports", type=int, default=2000)
    parser.add_argument("--pass-size", type=int, default=100)
    parser.add_argument("--database-url", default=None, help="an empty database (default: temporary SQLite)")
    args = parser.parse_args()
    configure_logging("WARNING", "console")
    report = Report("sharing step in-process: report projected → decided", argv=sys.argv)
    for named in (False, True):
        url = args.database_url or f"sqlite:///{tempfile.mkdtemp(prefix='bench-step-')}/hub.db"
        if args.database_url and named:
            break  # one run per given database: it must start empty
        proj, share, n = run_once(url, args, named)
        label = "with a named-professional directive" if named else "service decisions only"
        report.add(f"projection ({label})", proj, "ms", note="per report")
        report.add(f"sharing step ({label})", share, "ms", note=f"per report; {n} decisions in all")
    report.print()


if __name__ == "__main__":
    main()
