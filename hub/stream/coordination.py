"""Coordination alert rules over a child's records, evaluated in event time. Pure: no Kafka, HTTP or SQL.

A rule is data (``hub/stream/rulesets/coordination-alerts.json``): its parameters with a documented
default, the reason in words, the step to take and how its clearing reads. ``HUB_ALERT_RULES_FILE``
(JSON: rule id → parameters, ``"enabled": false`` to turn one off) changes them.

Evaluation is a function of the records and the event-time clock only. Each rule finds the
*episodes* in which its condition held: raised at the event time the condition began, cleared at the
event time it stopped (``None`` while it still holds at the clock). So a sweep after every event and
one sweep after a replay of the whole history find the same episodes, with the same keys and times.
The wiring (:mod:`hub.sharing.coordination`) turns episodes into alerts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from hub.core import records

RULESET = Path(__file__).with_name("rulesets") / "coordination-alerts.json"
MISSED = ("did_not_attend", "could_not_attend")
FAMILY = ("family", "young_person")
#: records that are not the receiving service's answer or contact, only the asking or the waiting
NOT_CONTACT = frozenset({"ReferralMade", "WaitingListEntered", "WaitEstimateUpdated"})


@dataclass(frozen=True)
class Rule:
    id: str
    params: Mapping[str, Any]
    default: str
    reason: str
    step: str
    cleared: str
    enabled: bool = True


@dataclass(frozen=True)
class Ruleset:
    version: str
    rules: tuple[Rule, ...]

    def get(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id and r.enabled), None)


def load_ruleset(overrides: Mapping[str, Mapping[str, Any]] | None = None, path: Path = RULESET) -> Ruleset:
    """The rule set with ``overrides`` (rule id → parameters; ``enabled``) applied; an unknown rule or
    parameter is a ValueError naming it."""
    data = json.loads(path.read_text())
    rules = []
    known = {r["id"] for r in data["rules"]}
    for rid in overrides or {}:
        if rid not in known:
            raise ValueError(f"unknown alert rule {rid!r} (known: {', '.join(sorted(known))})")
    for r in data["rules"]:
        params = dict(r["params"])
        change = dict((overrides or {}).get(r["id"], {}))
        enabled = bool(change.pop("enabled", True))
        for k, v in change.items():
            if k not in params:
                raise ValueError(f"alert rule {r['id']!r} has no parameter {k!r} (it has: {', '.join(params)})")
            params[k] = type(params[k])(v)
        rules.append(Rule(r["id"], params, r["default"], r["reason"], r["step"], r["cleared"], enabled))
    return Ruleset(str(data["version"]), tuple(rules))


@dataclass(frozen=True)
class Fact:
    """One of a child's records as the rules read it (the decoded record, times as datetimes)."""
    event_id: str
    record_type: str
    occurred_at: datetime
    agency_id: str | None
    service_name: str | None
    record: Mapping[str, Any]

    @property
    def service(self) -> tuple[str | None, str | None]:
        return (self.agency_id, self.service_name)


@dataclass(frozen=True)
class ChildFacts:
    household_id: str
    child_id: str
    facts: tuple[Fact, ...]  # in event-time order
    date_of_birth: date | None = None


@dataclass(frozen=True)
class Episode:
    key: str
    rule: str
    household_id: str
    child_id: str
    raised_at: datetime
    cleared_at: datetime | None
    message: str
    step: str
    resolution: str | None
    details: dict[str, Any] = field(default_factory=dict)


def _day(at: datetime) -> str:
    return f"{at:%d %b %Y}"


def _episode(rule: Rule, child: ChildFacts, anchor: str, raised: datetime, cleared: datetime | None,
             words: Mapping[str, Any], cleared_words: Mapping[str, Any], details: Mapping[str, Any]) -> Episode:
    fill = {**rule.params, **words}
    resolution = rule.cleared.format(**{**fill, **cleared_words}) if cleared is not None else None
    return Episode(key=f"{rule.id}:{child.child_id}:{anchor}", rule=rule.id, household_id=child.household_id,
                   child_id=child.child_id, raised_at=raised, cleared_at=cleared, message=rule.reason.format(**fill),
                   step=rule.step.format(**fill), resolution=resolution,
                   details={"rule": rule.id, "step": rule.step.format(**fill), **details})


def _is_miss(f: Fact) -> bool:
    if f.record_type == "AttendanceRecorded":
        return f.record.get("outcome") in MISSED
    return f.record_type == "AppointmentCancelled" and f.record.get("cancelled_by") in FAMILY


def missed_appointments(rule: Rule, child: ChildFacts, now: datetime) -> list[Episode]:
    """``count`` or more missed appointments (DNA, CNA, cancelled by the family) within ``window_days``."""
    count, window = int(rule.params["count"]), timedelta(days=rule.params["window_days"])
    misses = [f for f in child.facts if _is_miss(f) and f.occurred_at <= now]
    points = sorted({f.occurred_at for f in misses} | {f.occurred_at + window for f in misses})
    out: list[Episode] = []
    start: tuple[datetime, list[Fact]] | None = None
    for t in (p for p in points if p <= now):
        inside = [f for f in misses if t - window < f.occurred_at <= t]
        if len(inside) >= count and start is None:
            start = (t, inside)
        elif len(inside) < count and start is not None:
            out.append(_missed(rule, child, start, t))
            start = None
    if start is not None:
        out.append(_missed(rule, child, start, None))
    return out


def _missed(rule: Rule, child: ChildFacts, start: tuple[datetime, list[Fact]], end: datetime | None) -> Episode:
    at, inside = start
    services = ", ".join(sorted({f.service_name or "a service" for f in inside}))
    return _episode(rule, child, inside[0].event_id, at, end, {"count": len(inside), "services": services},
                    {"count": rule.params["count"], "date": _day(end) if end else ""},
                    {"event_ids": [f.event_id for f in inside]})


def _first_after(facts: Iterable[Fact], after: datetime, now: datetime, match: Callable[[Fact], bool]) -> Fact | None:
    return next((f for f in facts if after < f.occurred_at <= now and match(f)), None)


def _overdue(rule: Rule, child: ChildFacts, trigger: Fact, due: datetime, answer: Fact | None, now: datetime,
             words: Mapping[str, Any], answer_words: Callable[[Fact], Mapping[str, Any]]) -> list[Episode]:
    """The one episode of a trigger that needed an answer by ``due``: none if answered in time or not due."""
    if due > now or (answer is not None and answer.occurred_at <= due):
        return []
    cleared = answer.occurred_at if answer is not None else None
    cw = {**answer_words(answer), "date": _day(answer.occurred_at)} if answer is not None else {}
    return [_episode(rule, child, trigger.event_id, due, cleared, words, cw,
                     {"event_id": trigger.event_id, "service": trigger.service_name, "due": due.isoformat()})]


def referral_unanswered(rule: Rule, child: ChildFacts, now: datetime) -> list[Episode]:
    """A referral with no record from the receiving service (or an outcome naming it, from the agency it was sent
    to: another agency naming the referral does not answer it) after ``weeks``."""
    out: list[Episode] = []
    for r in (f for f in child.facts if f.record_type == "ReferralMade"):
        source_id = (r.record.get("meta") or {}).get("source_id")

        def answers(f: Fact, r: Fact = r, source_id: Any = source_id) -> bool:
            if f.record_type == "ReferralOutcome" and source_id and f.record.get("referral_id") == source_id:
                return f.agency_id == r.agency_id
            return f.service == r.service and f.record_type != "ReferralMade"

        answer = _first_after(child.facts, r.occurred_at, now, answers)
        due = r.occurred_at + timedelta(weeks=rule.params["weeks"])
        out += _overdue(rule, child, r, due, answer, now,
                        {"service": r.service_name or "the service", "referred": _day(r.occurred_at)},
                        lambda a: {})
    return out


def _is_contact(f: Fact) -> bool:
    if f.record_type == "AttendanceRecorded":
        return f.record.get("outcome") == "attended"
    return f.record_type == "AssessmentCompleted"


def discharge_no_follow_up(rule: Rule, child: ChildFacts, now: datetime) -> list[Episode]:
    """A hospital discharge with no attended appointment or completed assessment within ``days``."""
    out: list[Episode] = []
    for d in (f for f in child.facts if f.record_type == "HospitalDischarged"):
        contact = _first_after(child.facts, d.occurred_at, now, _is_contact)
        out += _overdue(rule, child, d, d.occurred_at + timedelta(days=rule.params["days"]), contact, now,
                        {"service": d.service_name or "hospital", "discharged": _day(d.occurred_at)},
                        lambda a: {"contact": a.service_name or "a service"})
    return out


def _estimate_due(child: ChildFacts, w: Fact, grace: timedelta) -> datetime | None:
    """When the wait passes the service's latest estimate made before it passed (None: no estimate)."""
    days = w.record.get("estimated_wait_days")
    due = w.occurred_at + timedelta(days=days) + grace if days is not None else None
    for u in child.facts:
        if (u.record_type == "WaitEstimateUpdated" and u.service == w.service and u.occurred_at > w.occurred_at
                and (due is None or u.occurred_at < due) and u.record.get("estimated_wait_days") is not None):
            due = w.occurred_at + timedelta(days=u.record["estimated_wait_days"]) + grace
    return due


def _contact_from(service: tuple[str | None, str | None]) -> Callable[[Fact], bool]:
    return lambda f: f.service == service and f.record_type not in NOT_CONTACT


def waiting_over_estimate(rule: Rule, child: ChildFacts, now: datetime) -> list[Episode]:
    """On a waiting list past the service's stated estimate with no contact from that service."""
    out: list[Episode] = []
    grace = timedelta(days=rule.params["grace_days"])
    for w in (f for f in child.facts if f.record_type == "WaitingListEntered"):
        due = _estimate_due(child, w, grace)
        if due is None:
            continue
        seen = _first_after(child.facts, w.occurred_at, now, _contact_from(w.service))
        out += _overdue(rule, child, w, due, seen, now,
                        {"service": w.service_name or "the service", "entered": _day(w.occurred_at),
                         "estimate": (due - w.occurred_at - grace).days}, lambda a: {})
    return out


def _is_transition_plan(f: Fact) -> bool:
    if f.record_type == "TransitionRecorded":
        return f.record.get("transition_kind") == "child_to_adult"
    return f.record_type == "PlanPublished" and f.record.get("plan_kind") == "transition_plan"


def transition_no_plan(rule: Rule, child: ChildFacts, now: datetime) -> list[Episode]:
    """A child at ``age_years`` (from enrolment's date of birth) with no transition plan by then."""
    dob = child.date_of_birth
    if dob is None:
        return []
    years = int(rule.params["age_years"])
    try:
        birthday = dob.replace(year=dob.year + years)
    except ValueError:  # 29 February
        birthday = dob.replace(year=dob.year + years, day=28)
    due = datetime.combine(birthday, time(), UTC)
    plan = _first_after(child.facts, datetime.min.replace(tzinfo=UTC), now, _is_transition_plan)
    trigger = Fact(f"age-{years}", "Birthday", due, None, None, {})
    return _overdue(rule, child, trigger, due, plan, now, {"due": _day(due)}, lambda a: {})


def _owes_report(f: Fact) -> bool:
    return f.record_type == "AssessmentCompleted" or (
        f.record_type == "ReferralOutcome" and f.record.get("outcome") == "accepted")


def _report_from(service: tuple[str | None, str | None], report_types: Iterable[str]) -> Callable[[Fact], bool]:
    types = frozenset(report_types)
    return lambda f: f.service == service and f.record_type in types


def report_not_ready(rule: Rule, child: ChildFacts, now: datetime) -> list[Episode]:
    """A report a service owes (an assessment done, a referral accepted; as readiness counts them) still not
    written ``warn_days`` before another service's appointment booked after it: cleared when it is
    written, or when the appointment has taken place without it."""
    report_types = records.catalogue().report_types
    warn = timedelta(days=rule.params["warn_days"])
    out: list[Episode] = []
    for owed in (f for f in child.facts if _owes_report(f)):
        written = _first_after(child.facts, owed.occurred_at, now, _report_from(owed.service, report_types))
        for appt in (f for f in child.facts if f.record_type == "AppointmentBooked" and f.service != owed.service):
            start = appt.record.get("start")
            if not isinstance(start, datetime) or start <= owed.occurred_at:
                continue
            raised = max(start - warn, owed.occurred_at, appt.occurred_at)
            if raised > now or (written is not None and written.occurred_at <= raised):
                continue
            ends = [(written.occurred_at, "written")] if written is not None else []
            ends += [(start, "passed")] if start <= now else []
            end = min(ends) if ends else None
            words = {"service": owed.service_name or "the service", "appointment": appt.service_name or "a service",
                     "start": _day(start)}
            cw = {"date": _day(end[0]), "how": "written" if end[1] == "written" else "not written; the appointment "
                  "took place without it"} if end else {}
            out.append(_episode(rule, child, f"{owed.event_id}:{appt.event_id}", raised, end[0] if end else None,
                                words, cw, {"owed_by": owed.service_name, "appointment_event_id": appt.event_id,
                                            "start": start.isoformat()}))
    return out


CHILD_RULES: dict[str, Callable[[Rule, ChildFacts, datetime], list[Episode]]] = {
    "missed_appointments": missed_appointments,
    "referral_unanswered": referral_unanswered,
    "discharge_no_follow_up": discharge_no_follow_up,
    "waiting_over_estimate": waiting_over_estimate,
    "transition_no_plan": transition_no_plan,
    "report_not_ready": report_not_ready,
}


def child_episodes(ruleset: Ruleset, child: ChildFacts, now: datetime) -> list[Episode]:
    """Every episode of every enabled child rule for this child up to the event-time clock ``now``."""
    out: list[Episode] = []
    for rule_id, evaluate in CHILD_RULES.items():
        rule = ruleset.get(rule_id)
        if rule is not None:
            out += evaluate(rule, child, now)
    return sorted(out, key=lambda e: (e.raised_at, e.key))


def caseload_episode(ruleset: Ruleset, coordinator_id: str, joined: Sequence[tuple[str, datetime]],
                     now: datetime) -> Episode | None:
    """The coordinator's caseload above ``limit``: raised on the household whose joining took it over
    (its time of joining), cleared (at ``now``) once the caseload is back within the limit."""
    rule = ruleset.get("caseload_over_limit")
    if rule is None:
        return None
    limit = int(rule.params["limit"])
    ordered = sorted(joined, key=lambda j: (j[1], j[0]))
    if len(ordered) <= limit:
        return None
    household, at = ordered[limit]
    ep = _episode(rule, ChildFacts(household, "", ()), coordinator_id, at, None, {"count": len(ordered)}, {},
                  {"coordinator_id": coordinator_id, "households": len(ordered)})
    return replace(ep, key=f"{rule.id}:{household}:{coordinator_id}")
