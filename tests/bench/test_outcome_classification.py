"""Why an appointment missed the goal, as the outcome bench puts it down: a booking or a missing report that
came under an identifier linked to the child only after the cut-off was parked until then (no hub could place
it), even when the child's first identifier was linked long before; anything else the hub held in time and
neither delivered nor showed is the hub's miss."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bench.outcome_figures import _appointment_outcomes
from hub.stream.coordination import ChildFacts, Fact
from hub.stream.kpis import Period

START = datetime(2025, 12, 12, 15, 0, tzinfo=UTC)
DUE = START - timedelta(days=2)
YEAR = Period(START - timedelta(days=300), START + timedelta(days=60))
SCHOOL = ("W06000022-S27", "Llanyrafon Primary School")
DIETETICS = ("7A6", "Dietetics, Serennu")


def fact(source_id: str, record_type: str, at: datetime, service: tuple[str, str], received: datetime,
         **record: Any) -> Fact:
    return Fact(f"e-{source_id}", record_type, at, *service,
                {**record, "meta": {"source_id": source_id, "received_at": received}})


def child() -> ChildFacts:
    """A dietetics report from before, and a school appointment booked under the child's UPN."""
    report = fact("report-1", "ReportIssued", DUE - timedelta(days=16), DIETETICS, DUE - timedelta(days=16))
    booking = fact("appt-1", "AppointmentBooked", START - timedelta(days=20), SCHOOL, START - timedelta(days=20),
                   start=START)
    return ChildFacts("hh-1", "child-1", (report, booking))


def outcomes(linked: dict[str, datetime], shown: frozenset[tuple[Any, Any]] = frozenset()) -> dict[str, int]:
    return dict(_appointment_outcomes([child()], [], YEAR, set(shown), linked))


def test_a_booking_under_an_identifier_linked_after_the_cut_off_was_parked_not_missed() -> None:
    # the NHS number (the report's) linked well before; the UPN (the booking's) 26 s after the cut-off
    linked = {"report-1": DUE - timedelta(days=20), "appt-1": DUE + timedelta(seconds=26)}
    assert outcomes(linked) == {"child_linked_after_the_cut_off": 1}


def test_the_same_appointment_held_in_time_and_not_shown_is_the_hubs_miss() -> None:
    linked = {"report-1": DUE - timedelta(days=20), "appt-1": DUE - timedelta(seconds=1)}
    assert outcomes(linked) == {"missed_by_the_hub": 1}
    assert outcomes(linked, frozenset({("appt-1", DUE - timedelta(seconds=1))})) == {"shown": 1}
    assert outcomes(linked, frozenset({("appt-1", DUE + timedelta(seconds=1))})) == {"missed_by_the_hub": 1}


def test_a_missing_report_under_an_identifier_linked_late_was_parked_too() -> None:
    linked = {"report-1": DUE + timedelta(hours=1), "appt-1": DUE - timedelta(days=20)}
    assert outcomes(linked) == {"child_linked_after_the_cut_off": 1}
