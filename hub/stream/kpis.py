"""Key performance indicators of coordination, computed from the stream's records. Pure: no Kafka, HTTP or SQL.

Each KPI is defined in docs/operations.md ("KPIs: definitions"), so a commissioner can check every
figure; this module is those definitions as code. Inputs are plain values: every child's records
(:class:`hub.stream.coordination.ChildFacts`), the share deliveries (:class:`Delivery`) and the
caseload sizes. A figure is grouped by the service (agency id and service name), by the agency, or by the
child's household type (:mod:`hub.stream.household_types`), over a period ``[start, end)`` of event time.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from hub.core import records
from hub.stream.coordination import ChildFacts, Fact

By = Literal["service", "agency", "household_type"]
Group = tuple[str, str]  # (agency id, service name; "" when grouped by agency) or (household type, "")
READY_BEFORE = timedelta(days=2)
FAMILY_KINDS = frozenset({"family", "young_person"})


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime

    def holds(self, at: datetime) -> bool:
        return self.start <= at < self.end


@dataclass(frozen=True)
class Delivery:
    """A share of a record to a recipient, as the delivery ledger holds it."""
    information_id: str
    recipient_kind: str  # service, professional, coordinator, family, young_person
    agency_id: str | None
    service: str | None
    delivered_at: datetime | None
    acknowledged_at: datetime | None


def group_of(agency_id: str | None, service: str | None, by: By) -> Group:
    return (agency_id or "", "" if by == "agency" else service or "")


@dataclass(frozen=True)
class Grouping:
    """How figures are grouped: by service or agency (of the record), or by the type of the child's household
    (``types``: household id → type)."""
    by: By
    types: Mapping[str, str] = field(default_factory=dict)

    def key(self, child: ChildFacts, agency_id: str | None, service: str | None) -> Group:
        if self.by == "household_type":
            return (self.types.get(child.household_id, ""), "")
        return group_of(agency_id, service, self.by)

    def rows(self, groups: Mapping[Group, dict[str, Any]]) -> list[dict[str, Any]]:
        if self.by == "household_type":
            return [{"household_type": g[0], **v} for g, v in sorted(groups.items())]
        return [{"agency_id": g[0], "service": g[1] or None, **v} for g, v in sorted(groups.items())]


def grouping(by: By | Grouping) -> Grouping:
    return by if isinstance(by, Grouping) else Grouping(by)


def median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def p90(values: Sequence[float]) -> float | None:
    """The 90th percentile by the nearest-rank method: the smallest value with at least 90 % at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(math.ceil(0.9 * len(ordered)) - 1, 0)], 2)


def rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _facts(children: Iterable[ChildFacts]) -> Iterable[tuple[ChildFacts, Fact]]:
    for child in children:
        for f in child.facts:
            yield child, f


def attendance(children: Iterable[ChildFacts], period: Period, by: By | Grouping) -> list[dict[str, Any]]:
    """DNA and CNA rates: of the appointment outcomes recorded in the period (attended, did not attend,
    could not attend, and cancellations by the family, which count as could not attend), the share of
    each."""
    grp = grouping(by)
    out: dict[Group, dict[str, Any]] = {}
    for child, f in _facts(children):
        if not period.holds(f.occurred_at):
            continue
        outcome = f.record.get("outcome") if f.record_type == "AttendanceRecorded" else (
            "could_not_attend" if f.record_type == "AppointmentCancelled"
            and f.record.get("cancelled_by") in FAMILY_KINDS else None)
        if outcome not in ("attended", "did_not_attend", "could_not_attend"):
            continue
        row = out.setdefault(grp.key(child, f.agency_id, f.service_name), {"appointments": 0, "dna": 0, "cna": 0})
        row["appointments"] += 1
        row["dna"] += outcome == "did_not_attend"
        row["cna"] += outcome == "could_not_attend"
    for row in out.values():
        row["dna_rate"], row["cna_rate"] = rate(row["dna"], row["appointments"]), rate(row["cna"], row["appointments"])
    return grp.rows(out)


def is_first_contact(f: Fact) -> bool:
    """A contact with the child: an attended appointment or a completed assessment."""
    return (f.record_type == "AttendanceRecorded" and f.record.get("outcome") == "attended") or \
        f.record_type == "AssessmentCompleted"


def referral_to_first_contact(children: Iterable[ChildFacts], period: Period, by: By | Grouping,
                              now: datetime) -> list[dict[str, Any]]:
    """Days from each referral made in the period to the receiving service's first contact with the child
    after it (median, p90); referrals with no contact yet by ``now`` are counted as still waiting."""
    grp = grouping(by)
    days: dict[Group, list[float]] = {}
    waiting: dict[Group, int] = {}
    for child, r in _facts(children):
        if r.record_type != "ReferralMade" or not period.holds(r.occurred_at):
            continue
        g = grp.key(child, r.agency_id, r.service_name)
        days.setdefault(g, [])
        contact = next((f for f in child.facts if r.occurred_at < f.occurred_at <= now and f.service == r.service
                        and is_first_contact(f)), None)
        if contact is None:
            waiting[g] = waiting.get(g, 0) + 1
        else:
            days[g].append((contact.occurred_at - r.occurred_at).total_seconds() / 86400)
    return grp.rows({g: {"referrals": len(v) + waiting.get(g, 0), "contacted": len(v),
                         "still_waiting": waiting.get(g, 0), "median_days": median(v), "p90_days": p90(v)}
                     for g, v in days.items()})


def _reports(children: Iterable[ChildFacts]) -> list[tuple[ChildFacts, Fact]]:
    types = records.catalogue().report_types
    return [(c, f) for c, f in _facts(children) if f.record_type in types]


def _first(deliveries: Iterable[Delivery], pick: Callable[[Delivery], bool]) -> dict[tuple[str, str, str], Delivery]:
    """The first delivered share of each record to each recipient (agency, service)."""
    out: dict[tuple[str, str, str], Delivery] = {}
    for d in deliveries:
        if d.delivered_at is None or not pick(d):
            continue
        key = (d.information_id, d.agency_id or "", d.service or "")
        if key not in out or d.delivered_at < out[key].delivered_at:  # type: ignore[operator]
            out[key] = d
    return out


def report_latency(children: Iterable[ChildFacts], deliveries: Sequence[Delivery], period: Period,
                   by: By | Grouping) -> list[dict[str, Any]]:
    """For the reports issued in the period, by the producing service: hours from issue to delivery to each
    professional recipient, and from delivery to that recipient's acknowledgement (median, p90)."""
    grp = grouping(by)
    first = _first(deliveries, lambda d: d.recipient_kind not in FAMILY_KINDS | {"coordinator"})
    by_info: dict[str, list[Delivery]] = {}
    for (info, *_), d in first.items():
        by_info.setdefault(info, []).append(d)
    out: dict[Group, dict[str, list[float]]] = {}
    for child, rep in _reports(children):
        if not period.holds(rep.occurred_at):
            continue
        row = out.setdefault(grp.key(child, rep.agency_id, rep.service_name), {"delivered": [], "acknowledged": []})
        for d in by_info.get(rep.event_id, []):
            row["delivered"].append((d.delivered_at - rep.occurred_at).total_seconds() / 3600)  # type: ignore[operator]
            if d.acknowledged_at is not None:
                row["acknowledged"].append((d.acknowledged_at - d.delivered_at).total_seconds() / 3600)  # type: ignore[operator]
    return grp.rows({g: {"deliveries": len(v["delivered"]), "acknowledged": len(v["acknowledged"]),
                      "issued_to_delivered_median_hours": median(v["delivered"]),
                      "issued_to_delivered_p90_hours": p90(v["delivered"]),
                      "delivered_to_acknowledged_median_hours": median(v["acknowledged"]),
                      "delivered_to_acknowledged_p90_hours": p90(v["acknowledged"])} for g, v in out.items()})


def reports_ready(children: Iterable[ChildFacts], deliveries: Sequence[Delivery], period: Period,
                  by: By | Grouping) -> list[dict[str, Any]]:
    """Of the appointments starting in the period for which other services had issued reports at least
    2 days before, the share where every one of those reports had been delivered to the appointment's
    service at least 2 days before; appointments with no such report are counted apart."""
    grp = grouping(by)
    first = _first(deliveries, lambda d: d.recipient_kind not in FAMILY_KINDS)
    reports: dict[str, list[Fact]] = {}  # each child's reports, in order: an appointment reads its child's only
    for c, f in _reports(children):
        reports.setdefault(c.child_id, []).append(f)
    out: dict[Group, dict[str, Any]] = {}
    for child, appt in _facts(children):
        start = appt.record.get("start")
        if appt.record_type != "AppointmentBooked" or not isinstance(start, datetime) or not period.holds(start):
            continue
        row = out.setdefault(grp.key(child, appt.agency_id, appt.service_name),
                             {"appointments": 0, "with_reports": 0, "all_ready": 0})
        row["appointments"] += 1
        due = start - READY_BEFORE
        relevant = [f for f in reports.get(child.child_id, ()) if f.occurred_at <= due and f.service != appt.service]
        if not relevant:
            continue
        row["with_reports"] += 1
        ready = [first.get((f.event_id, appt.agency_id or "", appt.service_name or "")) for f in relevant]
        row["all_ready"] += all(d is not None and d.delivered_at <= due for d in ready)  # type: ignore[operator]
    for row in out.values():
        row["share_all_ready"] = rate(row["all_ready"], row["with_reports"])
    return grp.rows(out)


def copies_to_family(children: Iterable[ChildFacts], deliveries: Sequence[Delivery], period: Period,
                     by: By | Grouping) -> list[dict[str, Any]]:
    """Of the reports issued in the period, by producing service, how many reached the family's own view
    (a family copy delivered to a parent or the young person)."""
    grp = grouping(by)
    copied = {d.information_id for d in deliveries if d.recipient_kind in FAMILY_KINDS and d.delivered_at is not None}
    out: dict[Group, dict[str, Any]] = {}
    for child, rep in _reports(children):
        if not period.holds(rep.occurred_at):
            continue
        row = out.setdefault(grp.key(child, rep.agency_id, rep.service_name), {"reports": 0, "copied_to_family": 0})
        row["reports"] += 1
        row["copied_to_family"] += rep.event_id in copied
    for row in out.values():
        row["share_copied"] = rate(row["copied_to_family"], row["reports"])
    return grp.rows(out)


def waiting_against_estimates(children: Iterable[ChildFacts], period: Period, by: By | Grouping,
                              now: datetime) -> list[dict[str, Any]]:
    """For the waiting-list entries made in the period with an estimate, by service: how many were seen
    (the service's first contact after the entry, as for referrals) within the estimate, how many after
    it, and how many are still waiting past it by ``now``; the median days over the estimate of those
    seen late."""
    grp = grouping(by)
    out: dict[Group, dict[str, Any]] = {}
    for child, w in _facts(children):
        days = w.record.get("estimated_wait_days")
        if w.record_type != "WaitingListEntered" or days is None or not period.holds(w.occurred_at):
            continue
        row = out.setdefault(grp.key(child, w.agency_id, w.service_name),
                             {"entries": 0, "within_estimate": 0, "after_estimate": 0, "waiting_past_estimate": 0,
                              "over": []})
        row["entries"] += 1
        due = w.occurred_at + timedelta(days=days)
        seen = next((f for f in child.facts if w.occurred_at < f.occurred_at <= now and f.service == w.service
                     and is_first_contact(f)), None)
        if seen is not None and seen.occurred_at <= due:
            row["within_estimate"] += 1
        elif seen is not None:
            row["after_estimate"] += 1
            row["over"].append((seen.occurred_at - due).total_seconds() / 86400)
        elif now > due:
            row["waiting_past_estimate"] += 1
    for row in out.values():
        over = row.pop("over")
        row["median_days_over"] = median(over)
    return grp.rows(out)


def statutory_deadlines(clocks: Iterable[Any], period: Period,
                        child_types: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Of the statutory clocks (``hub.stream.clocks.Clock``) whose deadline fell in the period, by nation and
    clock (and by the child's household type where ``child_types``, child id → type, is given): met in time,
    met late, stopped by a recorded exception, and still running past the deadline."""
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for c in clocks:
        if not period.start.date() <= c.deadline < period.end.date():
            continue
        kind = child_types.get(c.child_id, "") if child_types is not None else ""
        row = out.setdefault((c.nation, c.clock, kind), {
            "nation": c.nation, "clock": c.clock, **({"household_type": kind} if child_types is not None else {}),
            "due": 0, "met": 0, "late": 0, "stopped": 0, "overdue": 0})
        row["due"] += 1
        if c.state in ("met", "late", "stopped", "overdue"):
            row[c.state] += 1
    for row in out.values():
        row["share_met"] = rate(row["met"], row["met"] + row["late"] + row["overdue"])
    return [out[k] for k in sorted(out)]


def caseload_sizes(sizes: Mapping[str, int]) -> dict[str, Any]:
    """Families per coordinator now: each, and their median and largest."""
    values = list(sizes.values())
    return {"coordinators": [{"coordinator_id": c, "families": n} for c, n in sorted(sizes.items())],
            "median_families": median(values), "max_families": max(values) if values else None}


def all_kpis(children: Sequence[ChildFacts], deliveries: Sequence[Delivery], caseloads: Mapping[str, int],
             period: Period, by: By | Grouping, now: datetime, clocks: Iterable[Any] = ()) -> dict[str, Any]:
    grp = grouping(by)
    child_types = ({c.child_id: grp.types.get(c.household_id, "") for c in children}
                   if grp.by == "household_type" else None)
    return {"period": {"start": period.start.isoformat(), "end": period.end.isoformat()}, "by": grp.by,
            "kpis": {"attendance": attendance(children, period, grp),
                     "referral_to_first_contact": referral_to_first_contact(children, period, grp, now),
                     "report_latency": report_latency(children, deliveries, period, grp),
                     "reports_ready_before_appointments": reports_ready(children, deliveries, period, grp),
                     "copies_to_family": copies_to_family(children, deliveries, period, grp),
                     "waiting_against_estimates": waiting_against_estimates(children, period, grp, now),
                     "statutory_deadlines": statutory_deadlines(clocks, period, child_types),
                     "caseloads": caseload_sizes(caseloads)}}


CSV_FIELDS = ("kpi", "agency_id", "service", "household_type", "measure", "value")
_GROUP_KEYS = frozenset({"agency_id", "service", "household_type", "nation", "clock"})


def as_csv_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per KPI, group and measure, for the CSV form (:data:`CSV_FIELDS`): the group's agency id and
    service (a statutory clock's nation and clock), its household type when grouped by it (else the household
    type the figures were narrowed to, if any), the measure and its value."""
    rows: list[dict[str, Any]] = []
    narrowed = result.get("household_type") or ""
    for kpi, groups in result["kpis"].items():
        if kpi == "caseloads":
            rows += [{"kpi": kpi, "agency_id": "", "service": "", "household_type": "", "measure": c["coordinator_id"],
                      "value": c["families"]} for c in groups["coordinators"]]
            continue
        for g in groups:
            agency, service = (g["nation"], g["clock"]) if kpi == "statutory_deadlines" else (
                g.get("agency_id") or "", g.get("service") or "")
            rows += [{"kpi": kpi, "agency_id": agency, "service": service,
                      "household_type": g.get("household_type", narrowed), "measure": k,
                      "value": "" if v is None else v} for k, v in g.items() if k not in _GROUP_KEYS]
    return rows
