"""The outcome bench's figures: tallied from a simulated hub's database, merged across slices of the population,
summed up.

``tallies(store, seed, linked)`` reads what one run left in its database into counts and raw latency lists,
which add up across disjoint slices of the population (families are independent in the simulation: no
household, consent or report crosses a family); ``merge`` adds tallies up and ``summary`` turns them into the
printed figures (medians and percentiles from the merged lists, so a sliced run gives exactly the figures of
one run over the whole population: ``tests/bench/test_outcome_shards.py``).

The "no hub" baseline draws each report's postal delay from its own generator, seeded by the seed, the report
and the recipient service, so that it is the same however the population is sliced.
"""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from bench.population import END, SPAN_DAYS
from hub.db.schema import alerts, deliveries
from hub.db.sealed import sealer
from hub.db.store import Store, as_utc
from hub.sharing import coordination
from hub.sharing.alerts import opened
from hub.sharing.kpis import load_deliveries
from hub.stream import readmodel
from hub.stream.kpis import READY_BEFORE, Period, reports_ready

POST_DAYS = (3.0, 15.0)  # assumed: a report typed, printed and posted reaches its reader in 3-15 days

#: why an appointment missed the goal where no hub could have met it: the hub did not hold the report, or
#: the appointment, or the child, by the cut-off (2 days before the appointment)
BEYOND_ANY_HUB = ("report_reached_the_hub_after_the_cut_off", "booking_reached_the_hub_after_the_cut_off",
                  "child_linked_after_the_cut_off")

COUNTS = ("with_reports", "all_ready", "post_with_reports", "post_ready")
COUNTERS = ("outcomes", "alerts")
LISTS = ("latency", "in_team", "from_receipt", "post_latency")


def tallies(store: Store, seed: int, linked: dict[str, datetime]) -> dict[str, Any]:
    """What one run's database holds, as counts, counters and raw lists (minutes, or seconds from receipt)."""
    children = [c for h in readmodel.households(store) for c in coordination.household_facts(store, h.household_id)]
    sent = load_deliveries(store)
    year = Period(END - timedelta(days=SPAN_DAYS), END)
    ready = reports_ready(children, sent, year, "service")
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
    post = _baseline(children, year, seed)
    return {"with_reports": sum(r["with_reports"] for r in ready), "all_ready": sum(r["all_ready"] for r in ready),
            "outcomes": dict(_appointment_outcomes(children, sent, year, shown, linked)), "alerts": dict(kinds),
            "latency": latency, "in_team": in_team, "from_receipt": from_receipt, **post}


def merge(parts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Tallies of disjoint slices of the population added up (lists joined, counts and counters summed)."""
    out: dict[str, Any] = {**dict.fromkeys(COUNTS, 0), **{k: Counter() for k in COUNTERS},
                           **{k: [] for k in LISTS}}
    for t in parts:
        for k in COUNTS:
            out[k] += t[k]
        for k in COUNTERS:
            out[k].update(t[k])
        for k in LISTS:
            out[k].extend(t[k])
    return {k: dict(v) if k in COUNTERS else v for k, v in out.items()}


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def _pct(values: list[float], q: float) -> float | None:
    return round(sorted(values)[max(math.ceil(q * len(values)) - 1, 0)], 1) if values else None


def summary(t: dict[str, Any]) -> dict[str, Any]:
    """The printed figures from (merged) tallies."""
    with_reports, outcomes = t["with_reports"], t["outcomes"]
    beyond = sum(n for k, n in outcomes.items() if k in BEYOND_ANY_HUB)
    met = t["all_ready"] + outcomes.get("shown", 0)
    latency = t["latency"]
    return {"appointments_with_reports": with_reports,
            "hub": {"all_available_2_days_before": t["all_ready"],
                    "absence_shown_2_days_before": outcomes.get("shown", 0),
                    "share": round(met / with_reports, 4) if with_reports else None,
                    "missed": {k: n for k, n in sorted(outcomes.items()) if k not in ("delivered", "shown")},
                    "can_be_met": with_reports - beyond,
                    "share_of_those_that_can_be_met": round(met / (with_reports - beyond), 4)
                    if with_reports > beyond else None,
                    "latency_median_minutes": _median(latency), "latency_p95_minutes": _pct(latency, 0.95),
                    "deliveries": len(latency),
                    "in_team_at_issue": {"deliveries": len(t["in_team"]), "median_minutes": _median(t["in_team"]),
                                         "p95_minutes": _pct(t["in_team"], 0.95)},
                    "from_receipt_by_the_hub": {"median_seconds": _median(t["from_receipt"]),
                                                "p95_seconds": _pct(t["from_receipt"], 0.95)},
                    "alerts": dict(sorted(t["alerts"].items()))},
            "no_hub": {"share": round(t["post_ready"] / t["post_with_reports"], 4) if t["post_with_reports"] else None,
                       "all_available_2_days_before": t["post_ready"],
                       "latency_median_minutes": _median(t["post_latency"]),
                       "latency_p95_minutes": _pct(t["post_latency"], 0.95), "alerts": {}}}


def figures(store: Store, seed: int, linked: dict[str, datetime]) -> dict[str, Any]:
    """The figures of one run over its whole population."""
    return summary(tallies(store, seed, linked))


def _appointment_outcomes(children: list[Any], sent: list[Any], year: Period, shown: set[tuple[Any, Any]],
                          linked: dict[str, datetime]) -> Counter[str]:
    """Each appointment with relevant reports: ``delivered`` (every one 2 days before), ``shown`` (a readiness
    alert about it by then), or why it missed: the first that applies of the booking, the child's link or a
    missing report reaching the hub after the cut-off (no hub could meet those), else ``missed_by_the_hub``.
    ``linked``: when the identifier each record came under was first linked (by source id); a booking or a
    missing report whose identifier was linked after the cut-off was parked until then: ``child_linked_...``."""
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
            elif any(_parked(x.record["meta"].get("source_id"), linked, due) for x in (a, *missing)):
                out[BEYOND_ANY_HUB[2]] += 1
            elif any(as_utc(f.record["meta"]["received_at"]) > due for f in missing):
                out[BEYOND_ANY_HUB[0]] += 1
            else:
                out["missed_by_the_hub"] += 1
    return out


def _parked(source_id: Any, linked: dict[str, datetime], due: datetime) -> bool:
    """Whether the record was still parked at ``due``: the identifier it came under was not linked to the child."""
    return source_id not in linked or linked[source_id] > due


def _baseline(children: list[Any], year: Period, seed: int) -> dict[str, Any]:
    """Reports by post: each report reaches each other service after 3-15 days; nobody is told what is missing.
    Each (report, service) delay is drawn from its own generator, the same in any slice of the population."""
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
                    delay = random.Random(f"{seed}:{f.event_id}:{a.service!r}").uniform(*POST_DAYS)
                    arrival[key] = f.occurred_at + timedelta(days=delay)
                    latency.append((arrival[key] - f.occurred_at) / timedelta(minutes=1))
            ready += all(arrival[(f.event_id, a.service)] <= due for f in relevant)
    return {"post_with_reports": with_reports, "post_ready": ready, "post_latency": latency}
