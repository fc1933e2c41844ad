"""What the sharing step keeps of a child between passes (``hub.sharing.child_views``): a new entry is judged to
keep the child's recipients only when it surely does, a record read ahead of the change feed is never judged by
the view it built, and a child whose pass failed keeps its retry through passes that do not decide it whole."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hub.core.events import InboundEvent, SubjectRef
from hub.db.schema import identity_links, sharing_failures
from hub.db.store import Store
from hub.demo.identifiers import nhs_number
from hub.demo.journey import ABUHB_PAEDS
from hub.sharing import processor
from hub.sharing.child_views import ChildViews, View, keeps_recipients, view_of
from hub.sharing.model import targets_for
from hub.sharing.record_memo import RecordMemo
from hub.stream import projection, readmodel
from hub.stream.team import TeamMember, team_around
from tests.sharing.sharing_support import Feeder, stored_deliveries
from tests.sharing.test_settled_children import timed_events

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PHYSIO = {"agency_id": "7A6", "agency_name": None, "sector": "health", "service_code": "PHYS",
          "service_name": "Physiotherapy, Serennu"}
WHEN = datetime(2026, 1, 5, tzinfo=UTC)


# ------------------------------------------------------------------------------------------ the judgment, pure

def entry(kind: str, record: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": f"e-{kind}", "record_type": kind, "occurred_at": WHEN, "record": record}


def physio(**extra: Any) -> dict[str, Any]:
    return {"agency_id": "7A6", "sector": "health", "service_name": "Physiotherapy", "service_code": "PHYS", **extra}


def a_view(*, ehc_open: bool = False) -> View:
    member = TeamMember("7A6", "health", "Physiotherapy", WHEN, WHEN, {"p-1": "Sam"}, roles={"p-1": "physiotherapist"})
    return View(0, {("7A6", "Physiotherapy"): member}, {("7A6", "Physiotherapy"): "phys"}, ehc_open)


@pytest.mark.parametrize(("kind", "record", "why"), [
    ("AppointmentBooked", {"service": physio(service_name="Occupational therapy")}, "a service new to the team"),
    ("AppointmentBooked", {"service": physio(sector="social_care")}, "the service under another sector"),
    ("AppointmentBooked", {"service": physio(), "professional": {"id": "p-2"}}, "a professional new to the team"),
    ("AppointmentBooked", {"service": physio(), "professional": {"id": "p-1", "role": "lead"}}, "another role"),
    ("AttendanceRecorded", {"service": physio(service_code="PHYS2")}, "another service code"),
    ("ServiceDischarged", {"service": physio()}, "a discharge"),
    ("KeyProfessionalChanged", {"service": physio(), "current": {"id": "p-1"}}, "a change of key professional"),
    ("EhcAssessmentRequested", {"service": physio()}, "an EHC needs assessment opened"),
])
def test_an_entry_that_may_change_the_recipients_is_not_judged_by_the_view(kind: str, record: dict[str, Any],
                                                                          why: str) -> None:
    assert not keeps_recipients(a_view(), entry(kind, record)), why


@pytest.mark.parametrize(("kind", "record"), [
    ("AppointmentBooked", {"service": physio(), "professional": {"id": "p-1", "role": "physiotherapist"}}),
    ("AppointmentBooked", {"service": physio(), "professional": {"id": "p-1"}}),
    ("AttendanceRecorded", {"service": physio(service_code=None)}),
    ("WaitingListEntered", {"service": physio()}),
    ("IdentityLinked", {"action": "link"}),
])
def test_an_entry_with_a_known_service_and_professional_keeps_the_recipients(kind: str,
                                                                             record: dict[str, Any]) -> None:
    assert keeps_recipients(a_view(), entry(kind, record))
    assert keeps_recipients(a_view(ehc_open=True), entry("EhcAssessmentRequested", {"service": physio()}))


def test_the_views_are_bounded_and_let_go() -> None:
    views = ChildViews(2)
    for n in range(3):
        views.put(("hh", f"c-{n}"), a_view())
    assert len(views) == 2 and views.get(("hh", "c-0")) is None  # least recently used first out
    views.drop([("hh", "c-1")])
    assert views.get(("hh", "c-1")) is None and views.get(("hh", "c-2")) is not None
    views.clear()
    assert len(views) == 0
    none = ChildViews(0)
    none.put(("hh", "c-0"), a_view())
    assert len(none) == 0


def test_whenever_the_view_says_an_entry_keeps_the_recipients_they_are_the_same_with_it_as_without(
        tmp_path: Path) -> None:
    """Over a synthetic population's children: every entry, taken out of its child's record and judged against
    the view of the rest, is judged to keep the recipients only if the recipients with it equal those without."""
    store = Store.open(f"sqlite:///{tmp_path / 'hub.db'}")
    feeder = Feeder(store, NOW)
    events = [e for _, e in timed_events(8, 21)]
    for i in range(0, len(events), 200):
        projection.apply(store, feeder.decode(events[i:i + 200]))
    L = identity_links.c
    with store.engine.connect() as conn:
        homes = sorted({(r.household_id, r.child_id) for r in conn.execute(sa.select(L.household_id, L.child_id))})
    kept = judged = 0
    for hh, child in homes:
        entries = readmodel.child_records(store, hh, child)
        everyone = targets_for(team_around(entries), entries, hh, child)
        for e in entries:
            before = [x for x in entries if x["event_id"] != e["event_id"]]
            judged += 1
            if keeps_recipients(view_of(team_around(before), before, 0), e):
                kept += 1
                assert everyone == targets_for(team_around(before), before, hh, child), e["record_type"]
    assert judged > 500 and judged // 2 < kept < judged  # most entries keep them, and some are read whole


# ------------------------------------------------------------------------------------------ through the follower

def link(nhs: SubjectRef, n: str) -> InboundEvent:
    body = {"action": "link", "child_id": f"c-{n}", "household_id": f"hh-{n}", "identifier_system": "nhs-number"}
    return InboundEvent(record_type="IdentityLinked", sector="hub", source_system="enrol", source_id=f"l-{n}",
                        occurred_at=NOW - timedelta(days=30), subject=nhs, body=body)


def report(nhs: SubjectRef, sid: str, days: int) -> InboundEvent:
    return InboundEvent(record_type="ReportIssued", sector="health", source_system="abuhb", source_id=sid,
                        occurred_at=NOW - timedelta(days=days), subject=nhs, category="clinical",
                        body={"report_id": sid, "service": ABUHB_PAEDS, "report_kind": "paediatric", "title": sid})


def booking(nhs: SubjectRef, sid: str, service: dict[str, Any], days: int) -> InboundEvent:
    start = NOW + timedelta(days=days)
    return InboundEvent(record_type="AppointmentBooked", sector="health", source_system="abuhb", source_id=sid,
                        occurred_at=NOW - timedelta(days=1, hours=days), subject=nhs,
                        body={"service": service, "start": start, "end": start + timedelta(minutes=30),
                              "contact_type": "new"})


def for_physio(store: Store, report_id: str) -> list[dict[str, Any]]:

    return [d for d in stored_deliveries(store) if d["service"] == PHYSIO["service_name"]
            and json.loads(d["payload"])["information"].get("report_id") == report_id]


@pytest.fixture
def store(db_url: str) -> Store:
    return Store.open(db_url)


def test_a_new_service_read_ahead_of_the_feed_is_still_owed_the_earlier_report(store: Store) -> None:
    """A pass reads a child's whole record while the projection writes: it may see an entry whose change it has
    not read yet (here a booking that brings physiotherapy into the team). The view it keeps must not judge that
    change when it comes: physiotherapy is owed the earlier report."""
    feeder = Feeder(store, NOW)
    nhs = SubjectRef("nhs-number", nhs_number(411))
    feeder.feed([link(nhs, "411"), report(nhs, "paeds-1", 5)], NOW)
    projection.apply(store, feeder.decode([report(nhs, "paeds-2", 4)]))
    projection.apply(store, feeder.decode([booking(nhs, "appt-physio", PHYSIO, 4)]))  # ahead of the next pass
    feeder.follower.batch = 1  # the pass reads the second report's change alone, and the whole record
    first = feeder.follower.step(NOW)
    assert first.held and first.read == 1 and first.more
    assert for_physio(store, "paeds-1") == []  # physiotherapy was in the record, but its change not yet read
    feeder.follower.batch = 1000
    feeder.follow(NOW)
    assert [d["state"] for d in for_physio(store, "paeds-1")] == ["queued"]


def test_a_service_a_whole_read_saw_ahead_of_the_feed_is_still_owed_the_earlier_report(store: Store) -> None:
    """As above, but the pass that reads ahead reads the child whole (no view kept yet: a process that just took
    the cursor over) and builds the view. That view holds physiotherapy already, yet its booking's change, read
    by the next pass, is what owes it the earlier report: the view must not judge it (a view stamped with the
    feed position its pass read to, instead of the newest after the record, would, and lose the share)."""
    feeder = Feeder(store, NOW)
    nhs = SubjectRef("nhs-number", nhs_number(414))
    feeder.feed([link(nhs, "414"), report(nhs, "paeds-1", 5)], NOW)
    projection.apply(store, feeder.decode([report(nhs, "paeds-2", 4)]))
    projection.apply(store, feeder.decode([booking(nhs, "appt-physio", PHYSIO, 4)]))  # ahead of the next pass
    feeder.follower.memo = RecordMemo()  # nothing kept: the next pass reads the child whole
    feeder.follower.batch = 1
    first = feeder.follower.step(NOW)
    assert first.held and first.read == 1 and first.more
    assert len(feeder.follower.memo.views) == 1  # the whole read kept a view, physiotherapy in its team
    assert for_physio(store, "paeds-1") == []
    feeder.follower.batch = 1000
    feeder.follow(NOW)
    assert [d["state"] for d in for_physio(store, "paeds-1")] == ["queued"]


def test_a_child_read_once_is_then_settled_from_its_new_entries_alone(store: Store,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    feeder = Feeder(store, NOW)
    nhs = SubjectRef("nhs-number", nhs_number(412))
    feeder.feed([link(nhs, "412"), report(nhs, "paeds-1", 5)], NOW)
    read: list[list[tuple[str, str]]] = []
    real = processor.child_records

    def reading(store_: Store, homes: list[tuple[str, str]], memo: Any = None) -> Any:
        read.append(list(homes))
        return real(store_, homes, memo)

    monkeypatch.setattr(processor, "child_records", reading)
    assert feeder.feed([booking(nhs, "appt-1", ABUHB_PAEDS, 3)], NOW).children == {"c-412"}
    assert read[-1] == []  # settled by the view: the record was not read
    feeder.feed([booking(nhs, "appt-2", PHYSIO, 4)], NOW)  # a new service: read whole, physio owed the report
    assert read[-1] == [("hh-412", "c-412")]
    assert [d["state"] for d in for_physio(store, "paeds-1")] == ["queued"]


def failures_of(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        return [r.child_id for r in conn.execute(sa.select(sharing_failures.c.child_id))]


def test_a_failed_child_keeps_its_retry_through_passes_that_do_not_decide_it_whole(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    feeder = Feeder(store, NOW)
    nhs = SubjectRef("nhs-number", nhs_number(413))
    feeder.feed([link(nhs, "413"), report(nhs, "paeds-0", 9)], NOW)
    real = processor._sync_child

    def failing(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a fault in this child's pass")

    monkeypatch.setattr(processor, "_sync_child", failing)
    feeder.feed([report(nhs, "paeds-1", 5)], NOW)
    assert failures_of(store) == ["c-413"]
    monkeypatch.setattr(processor, "_sync_child", real)
    feeder.feed([booking(nhs, "appt-1", ABUHB_PAEDS, 3)], NOW)  # nothing to decide: the retry still waits
    feeder.feed([report(nhs, "paeds-2", 2)], NOW)  # only the new report decided: the retry still waits
    assert failures_of(store) == ["c-413"]
    feeder.follow(NOW + timedelta(minutes=10))  # the retry, once its backoff has passed
    assert failures_of(store) == []
    parents = [d for d in stored_deliveries(store) if d["recipient_key"] == "family:parents:hh-413"]

    assert sorted(json.loads(d["payload"])["information"]["report_id"] for d in parents) == [
        "paeds-0", "paeds-1", "paeds-2"]
