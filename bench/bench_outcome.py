"""The families' outcome, measured: a synthetic population replayed for one simulated year through the hub's
pipeline in accelerated event time, against a "no hub" baseline of reports sent by post.

Run: .venv/bin/python bench/bench_outcome.py [--families 60] [--events-per-family 80] [--chores-hours 96]
         [--no-readiness-at-arrival] [--window-minutes 5] [--escalate-minutes 60] [--per-event]
         [--local-webhook] [--database-url postgresql+psycopg://...] [--json PATH]
     in slices:  ... --slice K/N --json slice.json.gz      (the families i with i % N == K; tallies, not figures)
                 ... --slices N [--parallel 2] --out DIR   (every slice in its own process; resumable)
                 bench/bench_outcome.py --merge DIR        (the whole population's figures from its slices)

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
applies: its booking reached the hub after the cut-off (2 days before), the identifier the booking or a
missing report came under (the child's NHS number, UPN or local authority id) was not yet linked to the child
by then (the record was parked), a missing report reached the hub after the cut-off (no hub could meet these
three), or else the hub (``missed_by_the_hub``); the share is also given over the
appointments that can be met. ``per_simulated_month``: events handled, seconds, sweeps of every household
and their seconds, for each month of simulated time.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from bench.outcome_figures import figures, merge, summary, tallies
from bench.population import END, SPAN_DAYS, Population
from hub.core.logging import configure_logging
from hub.db.schema import agency_webhooks
from hub.db.store import Store
from hub.sharing import coordination, readiness
from hub.sharing.delivery import deliver_due, escalate_unacknowledged
from hub.stream import projection
from tests.sharing.sharing_support import (
    Feeder,
    Webhook,
    consent_event,
    permit_directive,
    withdraw_event,
)

__all__ = ["figures", "simulate"]


def consents(pop: Population, rng: random.Random, families: Sequence[int] | None = None) -> list[tuple[datetime, Any]]:
    """(arrival time, consent event) for each family's mix: broad, partial, none, withdrawn; ``families``: only
    these (each family's mix is drawn in order over the whole population, so a slice has the mix it has whole)."""
    start = END - timedelta(days=SPAN_DAYS)
    kinds = [rng.choices(("broad", "partial", "none", "withdrawn"), (40, 25, 25, 10))[0] for _ in range(pop.families)]
    out = []
    for i in range(pop.families) if families is None else families:
        kind = kinds[i]
        if kind == "none":
            continue
        sectors = ("health",) if kind == "partial" else ("health", "social_care", "education")
        for child in pop.family(i).children:
            subject = child.identifiers["nhs-number"]
            d = permit_directive(f"consent-{child.child_id}", child.child_id, start + timedelta(days=1),
                                 sectors=sectors)
            out.append((d.made_at, consent_event(d, subject)))
            if kind == "withdrawn":
                at = start + timedelta(days=SPAN_DAYS / 2)
                out.append((at, withdraw_event(d.id, subject, at)))
    return out


AGENCY_URL = "https://agency-system.example/hub"  # every agency's system, answered in process (below)


def _agency_system(request: httpx.Request) -> httpx.Response:
    """Every agency's system at the edge of the world: it takes each share and answers 200."""
    return httpx.Response(200, json={"received": True})


async def _client(local: Webhook | None) -> httpx.AsyncClient:
    """The deliverer's client: to the in-process agency system, or (``local``) over HTTP to a local endpoint."""
    if local is not None:
        return httpx.AsyncClient(timeout=10.0)
    return httpx.AsyncClient(timeout=10.0, transport=httpx.MockTransport(_agency_system))


ESCALATE_BATCH = 500  # escalate_unacknowledged takes up to this many overdue shares a call


class Run:
    """The simulated year's state: the pipeline's parts, the sweeps' next times and the timings per month."""

    def __init__(self, store: Store, feeder: Feeder, household_of: dict[tuple[str, str], str], chores: timedelta,
                 escalate_every: timedelta | None, readiness_at_arrival: bool, local: Webhook | None) -> None:
        self.store, self.feeder, self.household_of = store, feeder, household_of
        self.chores, self.escalate_every, self.readiness_at_arrival = chores, escalate_every, readiness_at_arrival
        self.next_chores = self.next_escalation = END - timedelta(days=SPAN_DAYS)
        self.runner = asyncio.Runner()
        self.client = self.runner.run(_client(local))
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
             escalate_every: timedelta | None = timedelta(hours=1), families: Sequence[int] | None = None,
             local_webhook: bool = False, until: datetime | None = None) -> dict[str, Any]:
    """Run the year (of ``families`` only, when given: a slice of the population), each event projected, decided
    and delivered at its own arrival time; returns timings.
    With ``readiness_at_arrival`` the household an event touched is swept for readiness at that arrival time
    (the hub sweeps every ``HUB_SHARING_READINESS_INTERVAL``, 300 s by default: "at once" in simulated time),
    besides the sweeps of every household every ``chores``. ``window`` None: each event is followed by its
    household's readiness sweep and an escalation pass (``escalate_every`` is then ignored), as before; else
    the households touched in each window of simulated time are swept once the window closes, each at its last
    event's arrival, and unacknowledged shares are escalated every ``escalate_every`` of simulated time in which
    events arrive and at the last arrival. Shares go to every agency's system in process (an endpoint answering
    200), or with ``local_webhook`` over HTTP to a local endpoint answering 200. ``until``: the last arrival of
    the whole population, for a slice of it (windows only): its sweeps and escalation go on to then."""
    feeder = Feeder(store, END)
    mine = list(range(pop.families)) if families is None else list(families)
    household_of = {(s.system, s.value): c.household_id for i in mine
                    for c in pop.family(i).children for s in c.identifiers.values()}
    timed = [(arrival, ev) for i in mine for arrival, ev in pop.family_events(i)]
    timed += consents(pop, random.Random(seed), mine)
    arrivals = sorted(((a, n, e) for n, (a, e) in enumerate(timed)), key=lambda t: (t[0], t[1]))
    agencies = sorted({(e.body.get("service") or e.body.get("school") or {}).get("agency_id", "")
                       for _, _, e in arrivals} - {""})
    hook = Webhook() if local_webhook else None  # the edge of the world: agencies' systems answering 200
    with store.engine.begin() as conn:
        if agencies:
            conn.execute(agency_webhooks.insert(), [{"agency_id": a, "url": hook.url if hook else AGENCY_URL,
                                                     "secret": "s" * 32} for a in agencies])
    t0 = time.perf_counter()
    run = Run(store, feeder, household_of, chores, escalate_every if window is not None else None,
              readiness_at_arrival, hook)
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
        started, end = time.perf_counter(), max(until or arrivals[-1][0], arrivals[-1][0])
        run.chores_until(end)  # a slice's sweeps go on to the whole population's last arrival, as in one run
        run.flush()
        run.escalate(end)
        run.month(end)["seconds"] += time.perf_counter() - started
    run.close()
    if hook is not None:
        hook.close()
    linked = placeable(arrivals)
    per_month = {m: {k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()}
                 for m, row in sorted(run.months.items())}
    return {"seconds": time.perf_counter() - t0, "events": len(arrivals), "linked": linked, "months": per_month}


def placeable(arrivals: Sequence[tuple[datetime, int, Any]]) -> dict[str, datetime]:
    """When the hub could first place each record on its child's record, by the record's source id: the first
    link of the identifier it came under (an NHS number, a UPN, a local authority id), or None (never linked).
    A record under an identifier linked later waits, parked, until that link arrives."""
    first_link: dict[tuple[str, str], datetime] = {}
    for arrival, _, ev in arrivals:
        if ev.record_type == "IdentityLinked" and ev.subject is not None:
            first_link.setdefault((ev.subject.system, ev.subject.value), arrival)
    return {ev.source_id: at for _a, _, ev in arrivals if ev.subject is not None
            and (at := first_link.get((ev.subject.system, ev.subject.value))) is not None}


SETTINGS = ("families", "events_per_family", "chores_hours", "readiness_at_arrival", "window_minutes", "per_event",
            "escalate_minutes", "seed", "local_webhook")


def _write(path: str, data: dict[str, Any]) -> None:
    text = json.dumps(data, indent=2)
    if path.endswith(".gz"):
        Path(path).write_bytes(gzip.compress(text.encode(), mtime=0))
    else:
        Path(path).write_text(text)


def _read(path: Path) -> dict[str, Any]:
    raw = path.read_bytes()
    data: dict[str, Any] = json.loads(gzip.decompress(raw) if path.name.endswith(".gz") else raw)
    return data


def run_one(args: argparse.Namespace) -> dict[str, Any]:
    """One run over the population, or over its slice ``--slice K/N`` (families i with i % N == K)."""
    k, n = (int(x) for x in args.slice.split("/")) if args.slice else (0, 1)
    if n > 1 and args.per_event:
        raise SystemExit("--slice needs windows of simulated time (without --per-event)")
    mine = [i for i in range(args.families) if i % n == k]
    commit = _commit()  # the code this slice runs (a later commit may land before it ends)
    pop = Population(args.families, args.events_per_family, seed=args.seed, chunk_families=args.families,
                     prefix="out")
    until = last_arrival(pop, args.seed) if n > 1 else None
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(args.database_url or f"sqlite:///{tmp}/outcome.db")
        run = simulate(store, pop, timedelta(hours=args.chores_hours), args.seed,
                       readiness_at_arrival=args.readiness_at_arrival,
                       window=None if args.per_event else timedelta(minutes=args.window_minutes),
                       escalate_every=timedelta(minutes=args.escalate_minutes), families=mine,
                       local_webhook=args.local_webhook, until=until)
        counted = tallies(store, args.seed, run["linked"])
    return {"settings": {k: getattr(args, k) for k in SETTINGS}, "slice": [k, n], "families_in_slice": len(mine),
            "events": run["events"], "seconds": round(run["seconds"], 1), "months": run["months"],
            "commit": commit, "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "tallies": counted}


def last_arrival(pop: Population, seed: int) -> datetime:
    """The last arrival of any record (or consent) of the whole population."""
    last = max(max((a for a, _ in consents(pop, random.Random(seed))), default=END - timedelta(days=SPAN_DAYS)),
               max((a for i in range(pop.families) for a, _ in pop.family_events(i)), default=END))
    return last


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def result_of(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The printed result of one run, or of every slice of one population (checked to be the same settings and
    every slice once)."""
    settings, n = parts[0]["settings"], parts[0]["slice"][1]
    if any(p["settings"] != settings for p in parts) or sorted(p["slice"][0] for p in parts) != list(range(n)) \
            or any(p["slice"][1] != n for p in parts):
        raise SystemExit("these are not the slices 0 to N-1 of one population with the same settings")
    events, seconds = sum(p["events"] for p in parts), sum(p["seconds"] for p in parts)
    months: dict[str, dict[str, float]] = {}
    for p in parts:
        for m, row in p["months"].items():
            into = months.setdefault(m, dict.fromkeys(row, 0))
            for key, v in row.items():
                into[key] = round(into[key] + v, 1)
    return {"families": settings["families"], "events": events, "slices": n, "seconds": round(seconds, 1),
            "events_per_second": round(events / seconds, 1), "ms_per_event": round(seconds / events * 1000, 1),
            "mode": "per event" if settings["per_event"] else
            f"windows of {settings['window_minutes']:g} min, escalation every {settings['escalate_minutes']:g} min",
            **summary(merge(p["tallies"] for p in parts)), "per_simulated_month": dict(sorted(months.items()))}


def run_slices(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every slice ``--slices N`` of the population, ``--parallel`` at a time, each in its own process and
    database, written to ``--out``; a slice already written there is not run again (a run can be resumed)."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    todo = [k for k in range(args.slices) if not (out / f"slice-{k}-of-{args.slices}.json.gz").exists()]
    base = [sys.executable, __file__] + [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in
                                         ("families", "events_per_family", "chores_hours", "window_minutes",
                                          "escalate_minutes", "seed")]
    base += [f"--{'' if args.readiness_at_arrival else 'no-'}readiness-at-arrival"]
    base += ["--per-event"] * args.per_event + ["--local-webhook"] * args.local_webhook
    running: list[tuple[int, subprocess.Popen[bytes]]] = []
    while todo or running:
        while todo and len(running) < args.parallel:
            k = todo.pop(0)
            print(f"{time.strftime('%H:%M:%S')} slice {k} of {args.slices} started", flush=True)
            cmd = [*base, f"--slice={k}/{args.slices}", f"--json={out / f'slice-{k}-of-{args.slices}.json.gz'}",
                   "--quiet"]
            running.append((k, subprocess.Popen(cmd)))
        time.sleep(1)
        for k, proc in list(running):
            if proc.poll() is not None:
                running.remove((k, proc))
                print(f"{time.strftime('%H:%M:%S')} slice {k} of {args.slices} ended ({proc.returncode})", flush=True)
                if proc.returncode:
                    raise SystemExit(f"slice {k} failed")
    return [_read(out / f"slice-{k}-of-{args.slices}.json.gz") for k in range(args.slices)]


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
    parser.add_argument("--local-webhook", action="store_true",
                        help="deliver over HTTP to a local endpoint (default: to the agencies' systems in process)")
    parser.add_argument("--slice", default="", help="K/N: only families i with i %% N == K")
    parser.add_argument("--slices", type=int, default=0,
                        help="run every slice K/N in its own process (--parallel at a time), results in --out")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--out", default="", help="with --slices: where each slice's result is written and kept")
    parser.add_argument("--merge", default="", help="a directory of slice results: print the whole run's figures")
    parser.add_argument("--database-url", default="")
    parser.add_argument("--json", default="")
    parser.add_argument("--quiet", action="store_true", help="write --json only")
    args = parser.parse_args()
    configure_logging("WARNING")
    if args.merge:
        result = result_of([_read(p) for p in sorted(Path(args.merge).glob("slice-*.json.gz"))])
    elif args.slices:
        started = time.perf_counter()
        result = {**result_of(run_slices(args)), "wall_seconds_of_this_call": round(time.perf_counter() - started)}
    else:
        one = run_one(args)
        if args.slice:
            _write(args.json, one)
            return
        result = result_of([one])
    if not args.quiet:
        print(json.dumps(result, indent=2))
    if args.json:
        _write(args.json, result)


if __name__ == "__main__":
    main()
