"""The KPIs reconcile: for a small population (the Evans and Lewis households and the "they haven't sent me
the report" journey, projected, decided and delivered as the hub does), each KPI is computed again here
from the raw events and the raw delivery rows, by its written definition, and compared: by service, and by
household type (the Evans household enrolled with two parents, the Lewis household with one, and a looked-after
child's household)."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from hub.core.errors import ValidationError
from hub.core.events import InboundEvent
from hub.db.schema import caseloads, deliveries, household_members, households, timeline_entries
from hub.db.store import Store, as_utc
from hub.demo import scenario
from hub.demo.journey import report_not_sent_journey
from hub.sharing import inbox
from hub.sharing.kpis import kpis
from tests.sharing.sharing_support import Feeder, deliver

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
START, END = NOW - timedelta(days=400), NOW + timedelta(days=30)
REPORTS = ("ReportIssued", "ReportAmended")  # the record types shared as a report (docs: "KPIs: definitions")
#: the household types as docs/operations.md ("KPIs: definitions") defines them, for the households enrolled below
TYPE_OF = {"household-evans": "two_parents_two_or_more_children", "household-lewis": "one_parent_one_child",
           "hh-961": "looked_after_child"}
GROUPINGS = ("service", "household_type")
Population = tuple[Store, list[InboundEvent], dict[Any, str]]


def enrol(conn: Any, household: str, *members: tuple[str, str, bool, str | None]) -> None:
    conn.execute(households.insert().values(household_id=household, created_at=NOW, created_by="t"))
    for member_id, kind, responsible, corporate in members:
        conn.execute(household_members.insert().values(
            member_id=member_id, household_id=household, kind=kind, relationship="parent" if kind == "adult" else kind,
            parental_responsibility=responsible, corporate_parent=corporate, created_at=NOW))


@pytest.fixture
def population(db_url: str) -> tuple[Store, list[InboundEvent], dict[Any, str]]:
    store = Store.open(db_url)
    seeds = scenario.build(NOW)
    journey = report_not_sent_journey(NOW, seed=961, child_id="c-961", household_id="hh-961")
    events = seeds.events + journey.before_consent + journey.consent
    Feeder(store, NOW).feed(events, NOW)
    deliver(store, NOW + timedelta(seconds=1))
    (first, *_), _ = inbox.inbox(store, "7A6", now=NOW + timedelta(hours=1), limit=500)
    inbox.acknowledge(store, "7A6", first["delivery_id"], now=NOW + timedelta(hours=3))
    with store.engine.begin() as conn:
        enrol(conn, "household-evans", ("evans-mum", "adult", True, None), ("evans-dad", "adult", True, None))
        enrol(conn, "household-lewis", ("lewis-mum", "adult", True, None), ("lewis-nan", "adult", False, None))
        enrol(conn, "hh-961", ("c-961", "child", False, "W06000022"), ("foster-carer", "adult", False, None))
        for n, cc in enumerate(["cc-a", "cc-a", "cc-b"]):
            conn.execute(households.insert().values(household_id=f"hh-k{n}", created_at=NOW, created_by="t"))
            conn.execute(caseloads.insert().values(coordinator_id=cc, household_id=f"hh-k{n}", since=NOW))
    child_of = {i: p.child_id for p in seeds.people for i in p.identifiers}
    child_of.update({e.subject: journey.child_id for e in journey.before_consent + journey.consent})
    return store, events, child_of


HOUSEHOLD_OF = {**{p.child_id: p.household_id for p in scenario.build(NOW).people}, "c-961": "hh-961"}


def group(by: str, child: str, service: tuple[str, str]) -> tuple[str, str]:
    """The group a figure about this child and service counts in: the service, or the household's type."""
    return service if by == "service" else (TYPE_OF[HOUSEHOLD_OF[child]], "")


def svc(e: InboundEvent) -> tuple[str, str]:
    s = e.body.get("service") or {}
    return (s.get("agency_id", ""), s.get("service_name", ""))


def rows(result: dict[str, Any], kpi: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {((r["household_type"], "") if "household_type" in r else (r["agency_id"], r["service"] or "")): r
            for r in result["kpis"][kpi]}


def nearest_rank_p90(values: list[float]) -> float:
    return round(sorted(values)[math.ceil(len(values) * 9 / 10) - 1], 2)


def check_dna_and_cna_rates_reconcile_with_the_raw_events(population: tuple[Store, list[InboundEvent], Any],
                                                         by: str) -> None:
    store, events, child_of = population
    want: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for e in events:
        if not START <= e.occurred_at < END:
            continue
        missed = e.body.get("outcome") if e.record_type == "AttendanceRecorded" else (
            "could_not_attend" if e.record_type == "AppointmentCancelled" and e.body.get("cancelled_by") == "family"
            else None)
        if missed in ("attended", "did_not_attend", "could_not_attend"):
            key = group(by, child_of[e.subject], svc(e))
            want[key][0] += 1
            want[key][1] += missed == "did_not_attend"
            want[key][2] += missed == "could_not_attend"
    got = rows(kpis(store, START, END, by, now=NOW), "attendance")  # type: ignore[arg-type]
    assert {k: [v["appointments"], v["dna"], v["cna"]] for k, v in got.items()} == dict(want)
    if by == "household_type":
        assert set(got) == {("one_parent_one_child", ""), ("two_parents_two_or_more_children", "")}
        return
    physio = got[("7A6", "Physiotherapy, Serennu")]
    assert physio["dna_rate"] == round(1 / 3, 4) and physio["cna_rate"] == round(2 / 3, 4)


def check_referral_to_first_contact_reconciles(population: tuple[Store, list[InboundEvent], dict[Any, str]],
                                              by: str) -> None:
    store, events, child_of = population
    days: dict[tuple[str, str], list[float]] = defaultdict(list)
    waiting: dict[tuple[str, str], int] = defaultdict(int)
    for r in (e for e in events if e.record_type == "ReferralMade" and START <= e.occurred_at < END):
        contacts = sorted(e.occurred_at for e in events if child_of.get(e.subject) == child_of[r.subject]
                          and svc(e) == svc(r) and r.occurred_at < e.occurred_at <= NOW
                          and (e.record_type == "AssessmentCompleted" or (e.record_type == "AttendanceRecorded"
                                                                         and e.body["outcome"] == "attended")))
        key = group(by, child_of[r.subject], svc(r))
        days[key] += [(contacts[0] - r.occurred_at) / timedelta(days=1)] if contacts else []
        waiting[key] += not contacts
    got = rows(kpis(store, START, END, by, now=NOW), "referral_to_first_contact")  # type: ignore[arg-type]
    assert set(got) == set(days) | set(waiting)
    for key, row in got.items():
        assert (row["contacted"], row["still_waiting"]) == (len(days[key]), waiting[key]), key
        assert row["median_days"] == (round(statistics.median(days[key]), 2) if days[key] else None)
        assert row["p90_days"] == (nearest_rank_p90(days[key]) if days[key] else None)
    if by == "service":
        assert got[("7A6", "Paediatric epilepsy nurses")]["still_waiting"] == 1


def raw_shares(store: Store) -> list[Any]:
    with store.engine.connect() as conn:
        return list(conn.execute(sa.select(deliveries).where(deliveries.c.kind == "share")))


def raw_reports(store: Store) -> dict[str, Any]:
    with store.engine.connect() as conn:
        return {r.event_id: r for r in conn.execute(sa.select(timeline_entries).where(
            timeline_entries.c.record_type.in_(REPORTS)))}


def check_report_latency_and_copies_to_family_reconcile_with_the_delivery_rows(
        population: tuple[Store, list[InboundEvent], Any], by: str) -> None:
    store, _, _ = population
    subjects = _subjects(store)
    reports = {k: r for k, r in raw_reports(store).items() if START <= as_utc(r.occurred_at) < END}
    delivered: dict[tuple[str, str], list[float]] = defaultdict(list)
    acked: dict[tuple[str, str], list[float]] = defaultdict(list)
    copied: dict[tuple[str, str], set[str]] = defaultdict(set)
    for d in raw_shares(store):
        rep = reports.get(d.information_id)
        if rep is None or d.delivered_at is None:
            continue
        key = group(by, subjects[rep.subject], (rep.agency_id, rep.service_name))
        if d.recipient_kind in ("family", "young_person"):
            copied[key].add(d.information_id)
        elif d.recipient_kind != "coordinator":
            delivered[key].append((as_utc(d.delivered_at) - as_utc(rep.occurred_at)) / timedelta(hours=1))
            if d.acknowledged_at is not None:
                acked[key].append((as_utc(d.acknowledged_at) - as_utc(d.delivered_at)) / timedelta(hours=1))
    result = kpis(store, START, END, by, now=NOW)  # type: ignore[arg-type]
    latency = rows(result, "report_latency")
    assert sum(len(v) for v in acked.values()) >= 1 and sum(len(v) for v in delivered.values()) >= 2
    for key, row in latency.items():
        assert row["deliveries"] == len(delivered[key]) and row["acknowledged"] == len(acked[key])
        assert row["issued_to_delivered_median_hours"] == (round(statistics.median(delivered[key]), 2)
                                                           if delivered[key] else None)
        assert row["delivered_to_acknowledged_p90_hours"] == (nearest_rank_p90(acked[key]) if acked[key] else None)
    family = rows(result, "copies_to_family")
    per_service: dict[tuple[str, str], int] = defaultdict(int)
    for r in reports.values():
        per_service[group(by, subjects[r.subject], (r.agency_id, r.service_name))] += 1
    assert {k: (v["reports"], v["copied_to_family"]) for k, v in family.items()} == {
        k: (n, len(copied[k])) for k, n in per_service.items()}


def check_reports_ready_before_appointments_reconciles(population: tuple[Store, list[InboundEvent], dict[Any, str]],
                                                      by: str) -> None:
    store, events, child_of = population
    ids = raw_reports(store)
    subjects = _subjects(store)
    shares = [d for d in raw_shares(store) if d.recipient_kind not in ("family", "young_person")
              and d.delivered_at is not None]
    want: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for a in (e for e in events if e.record_type == "AppointmentBooked" and START <= e.body["start"] < END):
        service, due, child = svc(a), a.body["start"] - timedelta(days=2), child_of[a.subject]
        key = group(by, child, service)
        want[key][0] += 1
        relevant = [r for r in ids.values() if subjects.get(r.subject) == child and as_utc(r.occurred_at) <= due
                    and (r.agency_id, r.service_name) != service]
        if not relevant:
            continue
        want[key][1] += 1
        want[key][2] += all(any(d.information_id == r.event_id and (d.agency_id, d.service) == service
                                and as_utc(d.delivered_at) <= due for d in shares) for r in relevant)
    got = rows(kpis(store, START, END, by, now=NOW), "reports_ready_before_appointments")  # type: ignore[arg-type]
    assert {k: [v["appointments"], v["with_reports"], v["all_ready"]] for k, v in got.items()} == dict(want)
    counted = ("7A6", "Community paediatrics, Serennu") if by == "service" else ("looked_after_child", "")
    assert got[counted]["with_reports"] >= 1


def _subjects(store: Store) -> dict[str, str]:
    from hub.db.schema import identity_links

    with store.engine.connect() as conn:
        return {r.subject: r.child_id for r in conn.execute(sa.select(identity_links).where(
            identity_links.c.active.is_(True)))}


def test_caseload_sizes_are_the_families_per_coordinator(population: tuple[Store, list[InboundEvent], Any]) -> None:
    store, _, _ = population
    sizes = kpis(store, START, END, now=NOW)["kpis"]["caseloads"]
    assert sizes["coordinators"] == [{"coordinator_id": "cc-a", "families": 2}, {"coordinator_id": "cc-b",
                                                                                 "families": 1}]
    assert sizes["median_families"] == 1.5 and sizes["max_families"] == 2


def check_waiting_against_estimates_reconciles(population: tuple[Store, list[InboundEvent], dict[Any, str]],
                                              by: str) -> None:
    store, events, child_of = population
    want: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for w in (e for e in events if e.record_type == "WaitingListEntered" and START <= e.occurred_at < END
              and e.body.get("estimated_wait_days") is not None):
        due = w.occurred_at + timedelta(days=w.body["estimated_wait_days"])
        seen = sorted(e.occurred_at for e in events if child_of.get(e.subject) == child_of[w.subject]
                      and svc(e) == svc(w) and w.occurred_at < e.occurred_at <= NOW
                      and (e.record_type == "AssessmentCompleted" or (e.record_type == "AttendanceRecorded"
                                                                     and e.body["outcome"] == "attended")))
        row = want[group(by, child_of[w.subject], svc(w))]
        row[0] += 1
        if seen:
            row[1 if seen[0] <= due else 2] += 1
        elif due < NOW:
            row[3] += 1
    got = rows(kpis(store, START, END, by, now=NOW), "waiting_against_estimates")  # type: ignore[arg-type]
    assert {k: [v["entries"], v["within_estimate"], v["after_estimate"], v["waiting_past_estimate"]]
            for k, v in got.items()} == dict(want)
    olivia = ("7A6", "Portage (child development advisors)") if by == "service" else ("one_parent_one_child", "")
    assert got[olivia]["waiting_past_estimate"] >= 1  # Olivia Lewis


def check_statutory_deadlines_met_reconcile_with_the_ehc_dates(population: tuple[Store, list[InboundEvent], Any],
                                                              by: str) -> None:
    store, events, _ = population
    (request,) = [e for e in events if e.record_type == "EhcAssessmentRequested"]
    (decided,) = [e for e in events if e.record_type == "EhcAssessmentDecided"]
    (plan,) = [e for e in events if e.record_type == "EhcPlanIssued"]
    received = request.body["request_received_date"]
    want = {"ehc_assessment_decision": decided.occurred_at.date() <= received + timedelta(weeks=6),
            "ehc_final_plan": plan.occurred_at.date() <= received + timedelta(weeks=20)}
    got = {r["clock"]: r for r in kpis(store, START, END, by, now=NOW)["kpis"]["statutory_deadlines"]}  # type: ignore[arg-type]
    assert set(got) == set(want)  # the annual review falls due after the period
    if by == "household_type":  # Olivia Lewis: a single parent's only child
        assert {r["household_type"] for r in got.values()} == {"one_parent_one_child"}
    for clock, met in want.items():
        assert (got[clock]["due"], got[clock]["met"], got[clock]["late"]) == (1, int(met), int(not met))
    assert got["ehc_final_plan"]["share_met"] == 0.0 and got["ehc_assessment_decision"]["share_met"] == 1.0


def test_figures_for_one_household_type_are_that_types_row_of_the_grouping_and_nothing_else(
        population: tuple[Store, list[InboundEvent], Any]) -> None:
    store, _, _ = population
    grouped = kpis(store, START, END, "household_type", now=NOW)
    for kind in TYPE_OF.values():
        narrowed = kpis(store, START, END, "household_type", now=NOW, household_type=kind)
        assert narrowed["household_type"] == kind
        for kpi in ("attendance", "referral_to_first_contact", "reports_ready_before_appointments",
                    "copies_to_family", "waiting_against_estimates"):
            assert narrowed["kpis"][kpi] == [r for r in grouped["kpis"][kpi] if r["household_type"] == kind], kpi
        assert narrowed["kpis"]["caseloads"] == grouped["kpis"]["caseloads"]  # caseloads stay whole
    nobody = kpis(store, START, END, now=NOW, household_type="two_parents_one_child")
    assert all(nobody["kpis"][k] == [] for k in ("attendance", "report_latency", "statutory_deadlines"))
    with pytest.raises(ValidationError, match="unknown household type 'lone parent' \\(known: looked_after_child, "):
        kpis(store, START, END, now=NOW, household_type="lone parent")


def test_dna_and_cna_rates_reconcile_with_the_raw_events(population: Population) -> None:
    for by in GROUPINGS:  # one population for both groupings: each is computed from the same raw events
        check_dna_and_cna_rates_reconcile_with_the_raw_events(population, by)


def test_referral_to_first_contact_reconciles(population: Population) -> None:
    for by in GROUPINGS:  # one population for both groupings: each is computed from the same raw events
        check_referral_to_first_contact_reconciles(population, by)


def test_report_latency_and_copies_to_family_reconcile_with_the_delivery_rows(population: Population) -> None:
    for by in GROUPINGS:  # one population for both groupings: each is computed from the same raw events
        check_report_latency_and_copies_to_family_reconcile_with_the_delivery_rows(population, by)


def test_reports_ready_before_appointments_reconciles(population: Population) -> None:
    for by in GROUPINGS:  # one population for both groupings: each is computed from the same raw events
        check_reports_ready_before_appointments_reconciles(population, by)


def test_waiting_against_estimates_reconciles(population: Population) -> None:
    for by in GROUPINGS:  # one population for both groupings: each is computed from the same raw events
        check_waiting_against_estimates_reconciles(population, by)


def test_statutory_deadlines_met_reconcile_with_the_ehc_dates(population: Population) -> None:
    for by in GROUPINGS:  # one population for both groupings: each is computed from the same raw events
        check_statutory_deadlines_met_reconcile_with_the_ehc_dates(population, by)
