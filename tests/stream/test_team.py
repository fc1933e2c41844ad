"""The appointments still ahead of a child (``hub.stream.team.upcoming``), which the clinician's notice of
reports before an appointment is built on: a booking belongs to the agency that made it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hub.stream.team import upcoming

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HEALTH = {"agency_id": "7A6", "sector": "health", "service_name": "Community paediatrics"}
COUNCIL = {"agency_id": "W06000022", "sector": "social_care", "service_name": "Children with Disabilities Team"}


def entry(record_type: str, source_id: str, service: dict[str, str], **fields: Any) -> dict[str, Any]:
    return {"event_id": f"ev-{record_type}-{source_id}-{service['agency_id']}", "record_type": record_type,
            "record": {"meta": {"source_id": source_id, "source_version": 1}, "service": service, **fields}}


def booked(start_days: float, source_id: str = "appt-1", service: dict[str, str] = HEALTH) -> dict[str, Any]:
    return entry("AppointmentBooked", source_id, service, start=NOW + timedelta(days=start_days))


def test_another_agencys_cancellation_with_the_same_id_leaves_the_appointment_booked() -> None:
    # the council's system numbers its own visits appt-1, appt-2, ... as the health board's does
    theirs = entry("AppointmentCancelled", "visit-9", COUNCIL, appointment_id="appt-1")
    (appt,) = upcoming([booked(10), theirs], NOW)
    assert (appt.appointment_id, appt.agency_id) == ("appt-1", "7A6")
    attended = entry("AttendanceRecorded", "att-1", COUNCIL, appointment_id="appt-1", outcome="attended")
    moved = entry("AppointmentRescheduled", "move-1", COUNCIL, appointment_id="appt-1",
                  new_start=NOW + timedelta(days=40))
    (appt,) = upcoming([booked(10), attended, moved], NOW)
    assert appt.start == NOW + timedelta(days=10) and not appt.rescheduled


def test_the_booking_agencys_own_records_move_and_end_it() -> None:
    moved = entry("AppointmentRescheduled", "move-1", HEALTH, appointment_id="appt-1",
                  new_start=NOW + timedelta(days=20))
    (appt,) = upcoming([booked(10), moved], NOW)
    assert appt.start == NOW + timedelta(days=20) and appt.rescheduled
    assert upcoming([booked(10), entry("AppointmentCancelled", "c-1", HEALTH, appointment_id="appt-1")], NOW) == []
    # each agency's appointment-1 is its own: both stand until each agency ends its own
    both = upcoming([booked(10), booked(12, service=COUNCIL),
                     entry("AttendanceRecorded", "att-1", HEALTH, appointment_id="appt-1")], NOW)
    assert [(a.agency_id, a.appointment_id) for a in both] == [("W06000022", "appt-1")]


def test_a_fhir_cancellation_names_the_booking_by_its_id_alone_and_ends_it() -> None:
    # a UK Core Appointment is booked as source id Appointment/4343; its cancellation (the same resource, status
    # cancelled) and an Encounter's attendance name it by the reference's id, 4343
    fhir_booking = booked(10, source_id="Appointment/4343")
    assert upcoming([fhir_booking], NOW)[0].appointment_id == "Appointment/4343"
    assert upcoming([fhir_booking, entry("AppointmentCancelled", "Appointment/4343#cancelled", HEALTH,
                                         appointment_id="4343")], NOW) == []
    assert upcoming([fhir_booking, entry("AttendanceRecorded", "Encounter/77", HEALTH, appointment_id="4343",
                                         outcome="attended")], NOW) == []
    # the other trust's cancellation of its own 4343 does not
    (appt,) = upcoming([fhir_booking, entry("AppointmentCancelled", "Appointment/4343#cancelled", COUNCIL,
                                            appointment_id="4343")], NOW)
    assert appt.agency_id == "7A6"
