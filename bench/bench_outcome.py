"""The families' outcome, measured: a synthetic population replayed for one simulated year through the hub's
pipeline in accelerated event time, against a "no hub" baseline of reports sent by post.

Run: /work/venv/bin/python bench/bench_outcome.py [--families 60] [--events-per-family 80] [--chores-hours 96]
         [--no-readiness-at-arrival] [--window-minutes 5] [--escalate-minutes 60] [--per-event]
         [--database-url postgresql+psycopg://...] [--json PATH]

The population is ``bench/population.py`` (sized from seed 000: 1-3 children a family, 4-20 professionals a
child a year, the seed's DNA/CNA split, 3 % of records late), plus a mix of consent per family: 40 %
broad (every sector, direct care), 25 % partial (health only), 25 % none, 10 % broad then withdrawn half
way through the year. Each event is handled at its own simulated arrival time (the population's: most
within minutes of the event, 3 % days late), as the processes would: encoded and sealed as the ingest
service does, decoded and projected as the worker does, decided by the sharing step (``Follower``) and
delivered at once to the agency's webhook (a local endpoint answering 200); every ``--chores-hours`` of
simulated time the readiness and coordination sweeps run at that time, and the household an event touched
is swept for readiness as the event arrives (the hub's readiness sweep runs every 300 s, which is "at once"
in simulated time; ``--no-readiness-at-arrival`` leaves only the sweeps every ``--chores-hours``).

Printed: the share of appointments where every relevant existing report was available to the clinician
at least 2 days before, or its absence was shown to the coordinator (a readiness alert with the step
that unblocks it) by then; the median and p95 report latency from issue to each recipient (simulated
minutes); alert counts by kind; and the same figures for the baseline: no alerts, every report posted
to each recipient, arriving after an assumed 3-15 days (typing, printing, second-class post; the seed
gives no figure), uniform. Each appointment that missed the goal is put down to the first reason that
applies: its booking reached the hub after the cut-off (2 days before), the child was not yet linked to a
household by then (their records were parked), a missing report reached the hub after the cut-off (no hub
could meet these three), or else the hub (``missed_by_the_hub``); the share is also given over the
appointments that can be met. ``per_simulated_month``: events handled, seconds, sweeps of every household
and their seconds, for each month of simulated time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import sqlalchemy as sa

from bench.population import END, SPAN_DAYS, Population
from hub.core.logging import configure_logging
from hub.db.schema import agency_webhooks, alerts, deliveries
from hub.db.sealed import sealer
from hub.db.store import Store, as_utc
from hub.sharing import coordination, readiness
from hub.sharing.alerts import opened
from hub.sharing.delivery import deliver_due, escalate_unacknowledged
from hub.sharing.kpis import load_deliveries
from hub.stream import projection, readmodel
from hub.stream.kpis import READY_BEFORE, Period, reports_ready
from tests.sharing.sharing_support import (
    Feeder,
    Webhook,
    consent_event,
    permit_directive,
    withdraw_event,
)

POST_DAYS = (3.0, 15.0)  # assumed: a report typed, printed and posted reaches its reader in 3-15 days


def consents(pop: Population, rng: random.Random) -> list[tuple[datetime, Any]]:
    """(arrival time, consent event) for each family's mix: broad, partial, none, withdrawn."""
    start = END - timedelta(days=SPAN_DAYS)
    out = []
    for i in range(pop.families):
        fam = pop.family(i)
        kind = rng.choices(("broad", "partial", "none", "withdrawn"), (40, 25, 25, 10))[0]
        if kind == "none":
            continue
        sectors = ("health",) if kind == "partial" else ("health", "social_care", "education")
        for child in fam.children:
            subject = child.identifiers["nhs-number"]
            d = permit_directive(f"consent-{child.child_id}", child.child_id, start + timedelta(days=1),
                                 sectors=sectors)
            out.append((d.made_at, consent_event(d, subject)))
            if kind == "withdrawn":
                at = start + timedelta(days=SPAN_DAYS / 2)
                out.append((at, withdraw_event(d.id, subject, at)))
    return out


async def _client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=10.0)


ESCALATE_BATCH = 500  # escalate_unacknowledged takes up to this many overdue shares a call


class Run:
    """The simulated year's state: the pipeline's parts, the sweeps' next times and the timings per month."""

    def __init__(self, store: Store, feeder: Feeder, household_of: dict[tuple[str, str], str], chores: timedelta,
                 escalate_every: timedelta | None, readiness_at_arrival: bool) -> None:
        self.store, self.feeder, self.household_of = store, feeder, household_of
        self.chores, self.escalate_every, self.readiness_at_arrival = chores, escalate_every, readiness_at_arrival
        self.next_chores = self.next_escalation = END - timedelta(days=SPAN_DAYS)
        self.runner = asyncio.Runner()
        self.client = self.runner.run(_client())
        self.pending: dict[str, datetime] = {}  # household -> its last event's arrival, not yet swept
        self.months: dict[str, dict[str, float]] = {}  # per simulated month: events, seconds, of which sweeps

    def month(self, at: datetime) -> dict[str, float]:
        return self.months.setdefault(f"{at:%Y-%m}", {"events": 0, "seconds": 0.0, "sweeps": 0,
                                                      "sweep_seconds": 0.0})

    def chores_until(self, arrival: datetime) -> None:
        """The readiness and coordination sweeps of every household at their simulated times up to ``arrival``."""
        month, started = self.month(arrival), time.perf_counter()
        while self.next_chores <= arrival:
            self.flush()  # households touched before this time are swept for readiness first, as they were
            readiness.sweep(self.store, self.next_chores)
            coordination.sweep(self.store, self.next_chores)
            self.next_chores += self.chores
            month["sweeps"] += 1
        month["sweep_seconds"] += time.perf_counter() - started

    def escalate(self, at: datetime) -> None:
        while escalate_unacknowledged(self.store, at) >= ESCALATE_BATCH:
            pass

    def escalate_until(self, arrival: datetime) -> None:
        """Shares unacknowledged past their window escalated every ``escalate_every`` of simulated time up to
        ``arrival``: once, at the last such time, when several passed with no event (nothing changed in between
        but the clock: the same alerts, raised at the later time)."""
        assert self.escalate_every is not None
        if self.next_escalation <= arrival:
            at = self.next_escalation + (arrival - self.next_escalation) // self.escalate_every * self.escalate_every
            self.escalate(at)
            self.next_escalation = at + self.escalate_every

    def handle(self, arrival: datetime, ev: Any) -> None:
        """One event at its own arrival time: sealed, projected, decided, delivered at once (and escalation with
        the delivery pass when it is not run every ``escalate_every``); its household swept for readiness at
        once (``window`` None) or when the window closes, at this arrival time."""
        self.feeder.ingest.clock = lambda at=arrival: at  # type: ignore[misc]
        projection.apply(self.store, self.feeder.decode([ev]))
        while self.feeder.follower.step(arrival).more:
            pass
        # what the decision queued goes out at once, as the deliverer sends it
        self.runner.run(deliver_due(self.store, self.client, arrival, escalate=self.escalate_every is None))
        household = self.household_of.get((ev.subject.system, ev.subject.value)) if ev.subject else None
        if self.readiness_at_arrival and household is not None:
            self.pending.pop(household, None)
            self.pending[household] = arrival

    def flush(self) -> None:
        """Sweep the households touched since the last flush for readiness, each at its last event's arrival."""
        for household, at in sorted(self.pending.items(), key=lambda kv: kv[1]):
            readiness.sweep(self.store, at, households=[household])
        self.pending.clear()

    def close(self) -> None:
        self.runner.run(self.client.aclose())
        self.runner.close()


def simulate(store: Store, pop: Population, chores: timedelta, seed: int, *, readiness_at_arrival: bool = True,
             window: timedelta | None = timedelta(minutes=5),
             escalate_every: timedelta | None = timedelta(hours=1)) -> dict[str, Any]:
    """Run the year, each event projected, decided and delivered at its own arrival time; returns timings.
    With ``readiness_at_arrival`` the household an event touched is swept for readiness at that arrival time
    (the hub sweeps every ``HUB_SHARING_READINESS_INTERVAL``, 300 s by default: "at once" in simulated time),
    besides the sweeps of every household every ``chores``. ``window`` None: each event is followed by its
    household's readiness sweep and an escalation pass (``escalate_every`` is then ignored), as before; else
    the households touched in each window of simulated time are swept once the window closes, each at its last
    event's arrival, and unacknowledged shares are escalated every ``escalate_every`` of simulated time in which
    events arrive and at the last arrival."""
    feeder = Feeder(store, END)
    household_of = {(s.system, s.value): c.household_id for i in range(pop.families)
                    for c in pop.family(i).children for s in c.identifiers.values()}
    timed = [(arrival, ev) for i in range(pop.families) for arrival, ev in pop.family_events(i)]
    timed += consents(pop, random.Random(seed))
    arrivals = sorted(((a, n, e) for n, (a, e) in enumerate(timed)), key=lambda t: (t[0], t[1]))
    agencies = sorted({(e.body.get("service") or e.body.get("school") or {}).get("agency_id", "")
                       for _, _, e in arrivals} - {""})
    hook = Webhook()  # every agency's system: a local endpoint that answers 200 (the edge of the world)
    with store.engine.begin() as conn:
        conn.execute(agency_webhooks.insert(), [{"agency_id": a, "url": hook.url, "secret": "s" * 32}
                                                for a in agencies])
    t0 = time.perf_counter()
    run = Run(store, feeder, household_of, chores, escalate_every if window is not None else None,
              readiness_at_arrival)
    origin, current = END - timedelta(days=SPAN_DAYS), -1
    for arrival, _, ev in arrivals:
        started = time.perf_counter()
        run.chores_until(arrival)
        if window is None:
            run.handle(arrival, ev)
            run.flush()
        else:
            if (w := (arrival - origin) // window) != current:
                run.flush()
                current = w
            run.escalate_until(arrival)
            run.handle(arrival, ev)
        month = run.month(arrival)
        month["events"] += 1
        month["seconds"] += time.perf_counter() - started
    if window is not None and arrivals:
        started = time.perf_counter()
        run.flush()
        run.escalate(arrivals[-1][0])
        run.month(arrivals[-1][0])["seconds"] += time.perf_counter() - started
    run.close()
    hook.close()
    linked: dict[str, datetime] = {}  # when the hub could first place each child: its first link's arrival
    for arrival, _, ev in arrivals:
        if ev.record_type == "IdentityLinked":
            linked.setdefault(ev.body["child_id"], arrival)
    per_month = {m: {k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()}
                 for m, row in sorted(run.months.items())}
    return {"seconds": time.perf_counter() - t0, "events": len(arrivals), "linked": linked, "months": per_month}


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def _pct(values: list[float], q: float) -> float | None:
    return round(sorted(values)[max(math.ceil(q * len(values)) - 1, 0)], 1) if values else None


def figures(store: Store, seed: int, linked: dict[str, datetime]) -> dict[str, Any]:
    children = [c for h in readmodel.households(store) for c in coordination.household_facts(store, h.household_id)]
    sent = load_deliveries(store)
    year = Period(END - timedelta(days=SPAN_DAYS), END)
    ready = reports_ready(children, sent, year, "service")
    with_reports = sum(r["with_reports"] for r in ready)
    all_ready = sum(r["all_ready"] for r in ready)
    seal = sealer(store)  # alert details are sealed at rest under the child's member key
    with store.engine.connect() as conn:
        shown = {(opened(seal, dict(r._mapping))["details"].get("appointment_id"), r.created_at)
                 for r in conn.execute(sa.select(alerts.c.alert_key, alerts.c.details, alerts.c.created_at).where(
                     alerts.c.kind == "readiness"))}
        kinds = Counter(r[0] for r in conn.execute(sa.select(alerts.c.kind)))
        rows = conn.execute(sa.select(deliveries.c.information_id, deliveries.c.delivered_at, deliveries.c.agency_id,
                                      deliveries.c.service).where(
            deliveries.c.kind == "share", deliveries.c.delivered_at.is_not(None))).all()
    reports = {f.event_id: (c, f) for c in children for f in c.facts
               if f.record_type in ("ReportIssued", "ReportAmended")}
    latency, in_team, from_receipt = [], [], []
    for r in rows:
        if r.information_id not in reports:
            continue
        child, rep = reports[r.information_id]
        at = as_utc(r.delivered_at)
        latency.append((at - rep.occurred_at) / timedelta(minutes=1))
        received = rep.record["meta"]["received_at"]
        from_receipt.append((at - as_utc(received)) / timedelta(seconds=1))
        joined = next((f.occurred_at for f in child.facts if f.service == (r.agency_id, r.service)), None)
        if joined is not None and joined <= rep.occurred_at:  # a recipient already in the team at issue
            in_team.append((at - rep.occurred_at) / timedelta(minutes=1))
    outcomes = _appointment_outcomes(children, sent, year, shown, linked)
    shown_in_time = outcomes["shown"]
    beyond = sum(n for k, n in outcomes.items() if k in BEYOND_ANY_HUB)
    met = all_ready + shown_in_time
    post = _baseline(children, year, random.Random(seed))
    return {"appointments_with_reports": with_reports,
            "hub": {"all_available_2_days_before": all_ready, "absence_shown_2_days_before": shown_in_time,
                    "share": round(met / with_reports, 4) if with_reports else None,
                    "missed": {k: n for k, n in sorted(outcomes.items()) if k not in ("delivered", "shown")},
                    "can_be_met": with_reports - beyond,
                    "share_of_those_that_can_be_met": round(met / (with_reports - beyond), 4)
                    if with_reports > beyond else None,
                    "latency_median_minutes": round(statistics.median(latency), 1) if latency else None,
                    "latency_p95_minutes": _pct(latency, 0.95), "deliveries": len(latency),
                    "in_team_at_issue": {"deliveries": len(in_team), "median_minutes": _median(in_team),
                                         "p95_minutes": _pct(in_team, 0.95)},
                    "from_receipt_by_the_hub": {"median_seconds": _median(from_receipt),
                                                "p95_seconds": _pct(from_receipt, 0.95)},
                    "alerts": dict(sorted(kinds.items()))},
            "no_hub": post}


#: why an appointment missed the goal where no hub could have met it: the hub did not hold the report, or
#: the appointment, or the child, by the cut-off (2 days before the appointment)
BEYOND_ANY_HUB = ("report_reached_the_hub_after_the_cut_off", "booking_reached_the_hub_after_the_cut_off",
                  "child_linked_after_the_cut_off")


def _appointment_outcomes(children: list[Any], sent: list[Any], year: Period, shown: set[tuple[Any, Any]],
                          linked: dict[str, datetime]) -> Counter[str]:
    """Each appointment with relevant reports: ``delivered`` (every one 2 days before), ``shown`` (a readiness
    alert about it by then), or why it missed: the first that applies of the booking, the child's link or a
    missing report reaching the hub after the cut-off (no hub could meet those), else ``missed_by_the_hub``."""
    out: Counter[str] = Counter()
    first: dict[tuple[str, str, str], datetime] = {}
    for d in sent:
        if d.delivered_at is not None:
            key = (d.information_id, d.agency_id or "", d.service or "")
            first[key] = min(first.get(key, d.delivered_at), d.delivered_at)
    alerted: dict[str, datetime] = {}
    for appt_id, at in shown:
        alerted[appt_id] = min(alerted.get(appt_id, as_utc(at)), as_utc(at))
    for child in children:
        for a in child.facts:
            start = a.record.get("start")
            if a.record_type != "AppointmentBooked" or not isinstance(start, datetime) or not year.holds(start):
                continue
            due = start - READY_BEFORE
            relevant = [f for f in child.facts if f.record_type in ("ReportIssued", "ReportAmended")
                        and f.occurred_at <= due and f.service != a.service]
            if not relevant:
                continue
            missing = [f for f in relevant
                       if (got := first.get((f.event_id, a.agency_id or "", a.service_name or ""))) is None
                       or got > due]
            appt = a.record["meta"].get("source_id")
            if not missing:
                out["delivered"] += 1
            elif appt in alerted and alerted[appt] <= due:
                out["shown"] += 1
            elif as_utc(a.record["meta"]["received_at"]) > due:
                out[BEYOND_ANY_HUB[1]] += 1
            elif child.child_id not in linked or linked[child.child_id] > due:
                out[BEYOND_ANY_HUB[2]] += 1
            elif any(as_utc(f.record["meta"]["received_at"]) > due for f in missing):
                out[BEYOND_ANY_HUB[0]] += 1
            else:
                out["missed_by_the_hub"] += 1
    return out


def _baseline(children: list[Any], year: Period, rng: random.Random) -> dict[str, Any]:
    """Reports by post: each report reaches each other service after 3-15 days; nobody is told what is missing."""
    latency: list[float] = []
    with_reports = ready = 0
    arrival: dict[tuple[str, tuple[Any, Any]], datetime] = {}
    for child in children:
        reports = [f for f in child.facts if f.record_type in ("ReportIssued", "ReportAmended")]
        for a in child.facts:
            start = a.record.get("start")
            if a.record_type != "AppointmentBooked" or not isinstance(start, datetime) or not year.holds(start):
                continue
            due = start - READY_BEFORE
            relevant = [f for f in reports if f.occurred_at <= due and f.service != a.service]
            if not relevant:
                continue
            with_reports += 1
            for f in relevant:
                key = (f.event_id, a.service)
                if key not in arrival:
                    arrival[key] = f.occurred_at + timedelta(days=rng.uniform(*POST_DAYS))
                    latency.append((arrival[key] - f.occurred_at) / timedelta(minutes=1))
            ready += all(arrival[(f.event_id, a.service)] <= due for f in relevant)
    return {"share": round(ready / with_reports, 4) if with_reports else None, "all_available_2_days_before": ready,
            "latency_median_minutes": round(statistics.median(latency), 1) if latency else None,
            "latency_p95_minutes": _pct(latency, 0.95), "alerts": {}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", type=int, default=60)
    parser.add_argument("--events-per-family", type=int, default=80)
    parser.add_argument("--chores-hours", type=float, default=96.0)
    parser.add_argument("--readiness-at-arrival", action=argparse.BooleanOptionalAction, default=True,
                        help="sweep the touched household's readiness as each event arrives (the hub's 300 s)")
    parser.add_argument("--window-minutes", type=float, default=5.0,
                        help="sweep the households touched in each window of simulated time once it closes")
    parser.add_argument("--per-event", action="store_true",
                        help="the earlier path: each event followed by its household's sweep and an escalation pass")
    parser.add_argument("--escalate-minutes", type=float, default=60.0,
                        help="escalate unacknowledged shares every this much simulated time (not with --per-event)")
    parser.add_argument("--seed", type=int, default=20261206)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    configure_logging("WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(args.database_url or f"sqlite:///{tmp}/outcome.db")
        pop = Population(args.families, args.events_per_family, seed=args.seed, chunk_families=args.families,
                         prefix="out")
        run = simulate(store, pop, timedelta(hours=args.chores_hours), args.seed,
                       readiness_at_arrival=args.readiness_at_arrival,
                       window=None if args.per_event else timedelta(minutes=args.window_minutes),
                       escalate_every=timedelta(minutes=args.escalate_minutes))
        result = {"families": args.families, "events": run["events"], "seconds": round(run["seconds"], 1),
                  "events_per_second": round(run["events"] / run["seconds"], 1),
                  "ms_per_event": round(run["seconds"] / run["events"] * 1000, 1),
                  "mode": "per event" if args.per_event else
                  f"windows of {args.window_minutes:g} min, escalation every {args.escalate_minutes:g} min",
                  **figures(store, args.seed, run["linked"]), "per_simulated_month": run["months"]}
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
