"""A local authority's SEN2 return, built from the events the hub holds and checked against the DfE fields."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from lxml import etree
from typer.testing import CliRunner

from connectors import education
from hub.core.events import InboundEvent, SubjectRef
from hub.db.store import Store
from hub.demo.identifiers import upn
from hub.demo.scenario import build
from hub.governance.audit import AuditLog
from hub.governance.sen2 import SPECIFICATION, check
from hub.governance.sen2_return import build_return, census_date
from hub.stream import projection
from tests.sharing.sharing_support import Feeder

NOW = datetime(2025, 12, 1, 9, 0, tzinfo=UTC)
NEWPORT = "W06000022"
SEN2_CHILD = upn(301)


def link(child: str, household: str, ident: SubjectRef) -> InboundEvent:
    return InboundEvent(record_type="IdentityLinked", sector="hub", source_system="hub-enrolment",
                        source_id=f"link-{child}-{ident.system}", occurred_at=NOW, subject=ident,
                        body={"action": "link", "child_id": child, "household_id": household,
                              "identifier_system": ident.system, "reason": "enrolled by care coordinator"})


def sen2_events(la_code: str, child_upn: str) -> list[InboundEvent]:
    """A request, its decision, a plan and its cessation as a council's SEND system sends them (SEN2 names)."""
    base = {"upn": child_upn, "la_code": la_code, "la_name": "Council", "occurred_at": "2025-06-01T10:00:00Z"}
    rows = [dict(base, event_type="ehc_request", event_id=f"{la_code}-R1", ReceivedDate="2025-02-03",
                 RequestSource="3"),
            dict(base, event_type="ehc_decision", event_id=f"{la_code}-D1", request_id=f"{la_code}-R1",
                 RequestOutcome="A", RequestOutcomeDate="2025-03-17"),
            dict(base, event_type="ehc_plan_issued", event_id=f"{la_code}-P1", plan_id="EHC-9",
                 request_id=f"{la_code}-R1", ReceivedDate="2025-02-03", StartDate="2025-06-16",
                 AssessmentOutcome="A", Week20="Y", SENtype="SLCN", SENsetting="EOTAS"),
            dict(base, event_type="ehc_plan_ceased", event_id=f"{la_code}-P1-C", plan_id="EHC-9",
                 request_id=f"{la_code}-R1", StartDate="2025-06-16", CeaseReason="5",
                 occurred_at="2025-11-03T10:00:00Z")]
    result = education.parse_payload(json.dumps(rows), "application/json")
    assert not result.problems, result.problems
    return result.events


@pytest.fixture
def store(sqlite_url: str) -> Store:
    store = Store.open(sqlite_url)
    feeder = Feeder(store, NOW)
    events = [*build(NOW).events, *sen2_events(NEWPORT, SEN2_CHILD), *sen2_events("201", upn(302)),
              link("child-newport-9", "household-newport-9", SubjectRef("upn", SEN2_CHILD)),
              link("child-london-1", "household-london-1", SubjectRef("upn", upn(302)))]
    projection.apply(store, feeder.decode(events))
    return store


def persons(xml: bytes) -> dict[str, etree._Element]:
    root = etree.fromstring(xml)
    out = {}
    for person in root.iterfind("Persons/Person"):
        (comment,) = [c for c in person if not isinstance(c.tag, str)]
        out[comment.text.split()[2].rstrip(":")] = person
    return out


def test_the_demo_authoritys_sen2_return_meets_the_dfe_field_definitions(store: Store) -> None:
    xml, count = build_return(store, NEWPORT, 2026, now=NOW)
    report = check(xml)
    assert report.problems == [], report.problems
    assert report.to_complete == {"Surname", "Forename", "PersonBirthDate", "Sex"}  # the hub holds none of them
    assert "2026" in SPECIFICATION
    root = etree.fromstring(xml)
    assert root.findtext("Header/CollectionDetails/ReferenceDate") == census_date(2026).isoformat() == "2026-01-15"
    assert root.findtext("Header/Source/LEA") == NEWPORT
    found = persons(xml)
    assert set(found) == {"child-lewis-1", "child-newport-9"} and count == 2

    olivia = found["child-lewis-1"].find("Requests/Request")
    assert olivia.findtext("RequestOutcome") == "A"            # the decision to assess
    assert olivia.findtext("Assessment/Week20") == "N"         # 22 weeks from request to plan
    assert olivia.findtext("Assessment/NamedPlan/StartDate") is not None

    sent = found["child-newport-9"].find("Requests/Request")
    assert [(e.tag, e.text) for e in sent.iter() if isinstance(e.tag, str) and e.text and e.text.strip()] == [
        ("ReceivedDate", "2025-02-03"), ("RequestSource", "3"), ("RequestOutcomeDate", "2025-03-17"),
        ("RequestOutcome", "A"), ("AssessmentOutcome", "A"), ("AssessmentOutcomeDate", "2025-06-16"),
        ("Week20", "Y"), ("StartDate", "2025-06-16"), ("SENtype", "SLCN"), ("CeaseDate", "2025-11-03"),
        ("CeaseReason", "5"), ("SENsetting", "EOTAS")]
    assert SEN2_CHILD.encode() not in xml  # no UPN, NHS number or name leaves in the file


def test_another_authoritys_return_holds_none_of_this_authoritys_children(store: Store) -> None:
    xml, count = build_return(store, "201", 2026, now=NOW)
    assert set(persons(xml)) == {"child-london-1"} and count == 1
    assert check(xml).problems == []
    nothing, none = build_return(store, "999", 2026, now=NOW)
    assert none == 0 and check(nothing).problems == []


def test_requests_after_the_census_date_wait_for_next_years_return(store: Store) -> None:
    _, count = build_return(store, NEWPORT, 2025, now=NOW)  # census 16 January 2025: before every request
    assert count == 0
    assert census_date(2025) == date(2025, 1, 16)


def test_a_return_outside_the_definitions_is_refused_with_the_item_named(store: Store) -> None:
    xml, _ = build_return(store, NEWPORT, 2026, now=NOW)
    bad = (xml.replace(b"<SENtype>SLCN</SENtype>", b"<SENtype>AUT</SENtype>")
              .replace(b"<CeaseReason>5</CeaseReason>", b"")
              .replace(b"<RequestSource>3</RequestSource>", b"<RequestSource>3</RequestSource><Colour>red</Colour>"))
    problems = check(bad).problems
    assert "Message/Persons/Person/Requests/Request/Assessment/NamedPlan/SENtype: 'AUT' is not in the code set " \
           "(SPLD, MLD, SLD, PMLD, SEMH, SLCN, HI, VI, MSI, PD, ASD, OTH)" in problems
    assert any(p.endswith("Colour: not an item of Request in " + SPECIFICATION) for p in problems)
    assert any(p.endswith("CeaseDate and CeaseReason go together") for p in problems)
    assert check(b"<Message><Header>").problems[0].startswith("not well-formed XML")


def test_the_command_writes_the_checked_return_and_audits_it(store: Store, sqlite_url: str, tmp_path: Path) -> None:
    from hub.cli.main import app

    out = tmp_path / "sen2.xml"
    env = {"HUB_DATABASE_URL": sqlite_url, "HUB_DATA_DIR": str(tmp_path), "HUB_LOG_LEVEL": "WARNING",
           "HUB_KAFKA_BOOTSTRAP": ""}
    done = CliRunner().invoke(app, ["returns", "sen2", "--la", NEWPORT, "--year", "2026", "--by", "ig-officer-1",
                                    "--out", str(out)], env=env)
    assert done.exit_code == 0, done.output
    assert f"wrote the SEN2 2026 return of {NEWPORT}: 2 person(s)" in done.output
    assert check(out.read_bytes()).problems == []
    (record,) = AuditLog(store).records(actions=["export"])
    assert (record.actor, record.data_ref, record.detail["persons"]) == ("ig-officer-1", f"SEN2 2026 {NEWPORT}", 2)


def test_the_command_writes_nothing_when_the_return_would_not_meet_the_definitions(
        store: Store, sqlite_url: str, tmp_path: Path) -> None:
    from hub.cli.main import app

    out = tmp_path / "sen2.xml"
    env = {"HUB_DATABASE_URL": sqlite_url, "HUB_DATA_DIR": str(tmp_path), "HUB_LOG_LEVEL": "WARNING",
           "HUB_KAFKA_BOOTSTRAP": ""}
    done = CliRunner().invoke(app, ["returns", "sen2", "--la", "W06000022-EXTRA", "--year", "2026", "--by",
                                    "ig-officer-1", "--out", str(out)], env=env)
    assert done.exit_code == 1, done.output
    assert "Message/Header/Source/LEA: is longer than 9 characters" in done.output
    assert not out.exists()
    assert AuditLog(store).records(actions=["export"]) == []  # no return made, none audited
