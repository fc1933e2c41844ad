"""Benchmark of the pure consent engine: decisions per second for one family with 20 directives.

Run: /work/venv/bin/python bench/bench_consent.py [--seconds N]
Single process, single thread (one core). Prints figures for a mixed request stream and per path.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, before site-packages

from consent import (
    Category,
    Child,
    ConsentEngine,
    Directive,
    DirectiveDecision,
    Grantor,
    Information,
    Override,
    OverrideScope,
    Period,
    Provision,
    Purpose,
    Recipient,
    RecipientKind,
    Scope,
    Sector,
    load_ruleset,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)
CHILD = "ch-bench"
AGENCIES = [f"ag-{i}" for i in range(8)]
PROS = [f"pr-{i}" for i in range(10)]


def build_family(engine: ConsentEngine, rng: random.Random):
    directives = []
    for i in range(20):
        decision = DirectiveDecision.PERMIT if i % 3 else DirectiveDecision.DENY
        scope = Scope(
            agency_ids=frozenset(rng.sample(AGENCIES, 2)) if i % 2 else None,
            sectors=frozenset({rng.choice([Sector.HEALTH, Sector.EDUCATION, Sector.SOCIAL_CARE])}),
            categories=frozenset(rng.sample(list(Category), 3)) if i % 4 == 0 else None,
            period=Period(T0, T0 + timedelta(days=365)) if i % 5 == 0 else None,
        )
        exceptions = ()
        if i % 3 == 1:
            narrowed = Scope(
                agency_ids=scope.agency_ids,
                sectors=scope.sectors,
                categories=scope.categories,
                period=scope.period,
                professional_ids=frozenset({rng.choice(PROS)}),
            )
            exceptions = (Provision(decision.opposite(), narrowed),)
        directives.append(
            Directive(
                id=f"dir-{i:02d}",
                child_id=CHILD,
                made_by="pa-bench",
                made_by_role=Grantor.PARENT,
                made_at=T0 + timedelta(days=i),
                decision=decision,
                scope=scope,
                exceptions=exceptions,
                withdrawn_at=T0 + timedelta(days=200) if i % 7 == 0 else None,
            )
        )
    override = Override(
        "ov-bench",
        CHILD,
        "pr-dsl",
        "Strategy discussion under s.47 following a disclosure at school.",
        T0 + timedelta(days=10),
        T0 + timedelta(days=40),
        OverrideScope(frozenset({AGENCIES[0]})),
    )
    return engine.compile(Child(CHILD, date(2014, 6, 1)), directives, [override])


def build_requests(rng: random.Random, n: int):
    reqs = []
    for i in range(n):
        info = Information(
            id=f"ev-{i}",
            kind=rng.choice(["report", "assessment", "plan", "appointment"]),
            category=rng.choice(list(Category)),
            agency_id=rng.choice(AGENCIES),
            sector=rng.choice([Sector.HEALTH, Sector.EDUCATION, Sector.SOCIAL_CARE]),
            about=CHILD,
            in_record_of=CHILD,
            issued_at=T0 + timedelta(days=rng.randrange(300)),
            disclosure_hold=rng.random() < 0.1,
        )
        if rng.random() < 0.1:
            rcpt = Recipient(RecipientKind.FAMILY, person_id="pa-bench")
        else:
            rcpt = Recipient(
                RecipientKind.AGENCY_PROFESSIONAL,
                agency_id=rng.choice(AGENCIES),
                sector=rng.choice([Sector.HEALTH, Sector.EDUCATION, Sector.SOCIAL_CARE]),
                service=rng.choice(["paediatrics", "slt", "senco", "sen_team"]),
                professional_id=rng.choice(PROS),
            )
        purpose = rng.choice(list(Purpose))
        at = T0 + timedelta(days=rng.randrange(400), seconds=rng.randrange(86400))
        reqs.append((info, rcpt, purpose, at))
    return reqs


def run(engine, family, reqs, seconds: float) -> tuple[int, float]:
    decide = engine.decide
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for info, rcpt, purpose, at in reqs:
            decide(info, rcpt, purpose, at, family)
        count += len(reqs)
        now = time.perf_counter()
        if now >= deadline:
            return count, now - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    rng = random.Random(20250101)
    engine = ConsentEngine(load_ruleset())
    t = time.perf_counter()
    family = build_family(engine, rng)
    compile_ms = (time.perf_counter() - t) * 1000
    reqs = build_requests(rng, 2000)
    run(engine, family, reqs, 0.3)  # warm-up (fills the candidate cache)
    outcomes: dict[str, int] = {}
    for info, rcpt, purpose, at in reqs:
        o = engine.decide(info, rcpt, purpose, at, family).outcome.value
        outcomes[o] = outcomes.get(o, 0) + 1
    count, elapsed = run(engine, family, reqs, args.seconds)
    rate = count / elapsed
    print(f"python {sys.version.split()[0]}, rule set {engine.ruleset.version}")
    print(
        "family: 20 directives (some nested, withdrawn, time-limited) + 1 override; "
        f"compile {compile_ms:.2f} ms"
    )
    print(f"request mix over {len(reqs)} distinct requests: {outcomes}")
    print(
        f"mixed stream: {count:,} decisions in {elapsed:.2f} s = {rate:,.0f} decisions/s "
        f"({1e6 / rate:.2f} us/decision) on one core"
    )
    cross = [
        r for r in reqs if r[1].kind is RecipientKind.AGENCY_PROFESSIONAL and r[2] is Purpose.DIRECT_CARE
    ]
    c2, e2 = run(engine, family, cross, args.seconds / 2)
    print(f"cross-agency direct-care only: {c2 / e2:,.0f} decisions/s")
    print(f"goal >= 100,000 decisions/s: {'MET' if rate >= 100_000 else 'NOT MET'}")


if __name__ == "__main__":
    main()
