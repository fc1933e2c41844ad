"""A local authority's SEN2 return, built from the events the hub holds and checked against the DfE fields."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from lxml import etree
from typer.testing import CliRunner

from connectors import education
from hub.core.errors import ValidationError
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
NEWPORT = "W06000022"  # the demo's authority: in Wales, which makes no SEN2 return
ENGLAND, LEA = "E09000001", "201"  # City of London: its ONS code (the events' agency id) and DfE number
SEN2_CHILD = upn(301)


def in_england(events: list[InboundEvent]) -> list[InboundEvent]:
    """The demo's events as if its authority were City of London (SEN2 is an England return)."""
    def moved(value: object) -> object:
        if isinstance(value, dict):
            return {k: moved(v) for k, v in value.items()}
        return value.replace(NEWPORT, ENGLAND) if isinstance(value, str) else value
    return [dataclasses.replace(e, body=moved(e.body)) for e in events]  # type: ignore[arg-type]


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
                 RequestOutcome="Y", RequestOutcomeDate="2025-03-17"),
            dict(base, event_type="ehc_plan_issued", event_id=f"{la_code}-P1", plan_id="EHC-9",
                 request_id=f"{la_code}-R1", ReceivedDate="2025-02-03", StartDate="2025-06-16",
                 AssessmentOutcome="Y", Week20="1", SENtype="SLCN", SENsetting="EOTAS"),
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
    events = [*in_england(build(NOW).events), *sen2_events(ENGLAND, SEN2_CHILD), *sen2_events("E08000025", upn(302)),
              link("child-newport-9", "household-newport-9", SubjectRef("upn", SEN2_CHILD)),
              link("child-birmingham-1", "household-birmingham-1", SubjectRef("upn", upn(302)))]
    projection.apply(store, feeder.decode(events))
    return store


def persons(xml: bytes) -> dict[str, etree._Element]:
    root = etree.fromstring(xml)
    out = {}
    for person in root.iterfind("Persons/Person"):
        (comment,) = [c for c in person if not isinstance(c.tag, str)]
        out[comment.text.split()[2].rstrip(":")] = person
    return out


def test_the_demo_sen2_return_meets_the_dfe_field_definitions(store: Store) -> None:
    xml, count = build_return(store, ENGLAND, 2026, lea=LEA, now=NOW)
    report = check(xml)
    assert report.problems == [], report.problems
    # what the hub never holds, left for the authority's own system (each named, none invented)
    assert report.to_complete == {"Surname", "Forename", "PersonBirthDate", "Sex", "Ethnicity", "PostCode", "DMO",
                                  "DCO", "PlanDetail", "PlacementDetail", "SENneed", "SENunitIndicator",
                                  "ResourcedProvisionIndicator"}
    assert "2026" in SPECIFICATION
    root = etree.fromstring(xml)
    assert root.findtext("Header/CollectionDetails/ReferenceDate") == census_date(2026).isoformat() == "2026-01-15"
    assert root.findtext("Header/Source/LEA") == LEA and root.findtext("Header/Source/SerialNo") == "001"
    found = persons(xml)
    assert set(found) == {"child-lewis-1", "child-newport-9"} and count == 2

    olivia = found["child-lewis-1"].find("Requests")
    assert olivia.findtext("RequestOutcome") == "Y"            # the decision to assess: the LA proceeded
    assert olivia.find("Assessment/Week20") is None            # 22 weeks says nothing of the exceptions
    assert olivia.findtext("Assessment/AssessmentOutcome") == "Y"
    assert olivia.findtext("Assessment/NamedPlan/StartDate") is not None
    assert olivia.find("ActivePlans") is not None              # maintained on the census date

    sent = found["child-newport-9"].find("Requests")
    assert [(e.tag, e.text) for e in sent.iter() if isinstance(e.tag, str) and e.text and e.text.strip()] == [
        ("ReceivedDate", "2025-02-03"), ("RequestSource", "3"), ("RequestOutcomeDate", "2025-03-17"),
        ("RequestOutcome", "Y"), ("AssessmentOutcome", "Y"), ("AssessmentOutcomeDate", "2025-06-16"),
        ("Week20", "1"), ("StartDate", "2025-06-16"), ("SENSetting", "OLA"), ("PlacementRank", "1"),
        ("CeaseDate", "2025-11-03"), ("CeaseReason", "5")]
    assert sent.find("ActivePlans") is None  # ceased before the census date
    assert SEN2_CHILD.encode() not in xml  # no UPN, NHS number or name leaves in the file


def clock_exception(clock: str, at: datetime) -> InboundEvent:
    """The authority recording, for Olivia, an exception the law allows that stops one of her EHC clocks."""
    from hub.demo import scenario

    olivia = next(p for p in scenario.build(NOW).people if p.child_id == "child-lewis-1")
    return in_england([InboundEvent(
        record_type="StatutoryClockException", sector="education", source_system="newport-ehc",
        source_id=f"exc-{clock}", occurred_at=at, subject=olivia.id("upn"), category="education", mapping="demo@1",
        body={"service": scenario.SEND, "clock": clock, "exception": "reg. 13(3)(b): the child was away"})])[0]


def olivia_week20(store: Store, *events: InboundEvent) -> str | None:
    projection.apply(store, Feeder(store, NOW).decode(list(events)))
    xml, _ = build_return(store, ENGLAND, 2026, lea=LEA, now=NOW)
    assert check(xml).problems == []
    value: str | None = persons(xml)["child-lewis-1"].find("Requests").findtext("Assessment/Week20")
    return value


def olivia_ehc() -> tuple[datetime, datetime]:
    """When Olivia's EHC needs assessment was requested, and when her plan was issued (the demo's times)."""
    ehc = {e.record_type: e.occurred_at for e in build(NOW).events if e.record_type in (
        "EhcAssessmentRequested", "EhcPlanIssued")}
    return ehc["EhcAssessmentRequested"], ehc["EhcPlanIssued"]


def test_an_exception_to_another_clock_or_after_the_plan_leaves_week20_unsaid(store: Store) -> None:
    requested, issued = olivia_ehc()
    # an exception to the 6-week decision clock says nothing of the 20-week limit
    assert olivia_week20(store, clock_exception("ehc_assessment_decision", requested + timedelta(days=10))) is None
    # nor does one recorded after the plan was issued
    assert olivia_week20(store, clock_exception("ehc_final_plan", issued + timedelta(days=3))) is None


def test_an_exception_to_the_final_plan_clock_between_request_and_plan_is_week20_1(store: Store) -> None:
    requested, _issued = olivia_ehc()
    assert olivia_week20(store, clock_exception("ehc_final_plan", requested + timedelta(days=30))) == "1"


def test_the_demo_authority_in_wales_is_refused_with_a_message_that_says_so(store: Store) -> None:
    for agency, lea in ((NEWPORT, "680"), (NEWPORT, LEA), (ENGLAND, "680")):
        with pytest.raises(ValidationError) as refused:
            build_return(store, agency, 2026, lea=lea, now=NOW)
        assert "England" in str(refused.value) and f"LEA {lea}" in str(refused.value)
    with pytest.raises(ValidationError, match=f"LEA {LEA}: agency {NEWPORT} is an authority in Wales"):
        build_return(store, NEWPORT, 2026, lea=LEA, now=NOW)
    for lea in ("W06000022", "20", "2010", None):
        with pytest.raises(ValidationError, match="3-digit DfE local-authority number"):
            build_return(store, ENGLAND, 2026, lea=lea, now=NOW)


def test_another_authoritys_return_holds_none_of_this_authoritys_children(store: Store) -> None:
    xml, count = build_return(store, "E08000025", 2026, lea="330", now=NOW)
    assert set(persons(xml)) == {"child-birmingham-1"} and count == 1
    assert check(xml).problems == []
    nothing, none = build_return(store, "E06000999", 2026, lea="800", now=NOW)
    assert none == 0 and check(nothing).problems == []


def test_requests_after_the_census_date_wait_for_next_years_return(store: Store) -> None:
    _, count = build_return(store, ENGLAND, 2025, lea=LEA, now=NOW)  # census 16 January 2025: before every request
    assert count == 0
    assert census_date(2025) == date(2025, 1, 16)


def test_events_of_the_earlier_mapping_are_read_as_the_dfe_codes(sqlite_url: str) -> None:
    """mis-generic@2 wrote A for "assess"/"issue" and EOTAS: a return must not say "decision yet to be made"."""
    store = Store.open(sqlite_url)
    old = [dataclasses.replace(e, mapping="mis-generic@2",
                               body={**e.body, **({"request_outcome": "A"} if "request_outcome" in e.body else {}),
                                     **({"assessment_outcome": "A", "sen_setting": "EOTAS"}
                                        if "assessment_outcome" in e.body else {})})
           for e in sen2_events(ENGLAND, SEN2_CHILD)]
    projection.apply(store, Feeder(store, NOW).decode(
        [*old, link("child-newport-9", "household-newport-9", SubjectRef("upn", SEN2_CHILD))]))
    xml, _ = build_return(store, ENGLAND, 2026, lea=LEA, now=NOW)
    request = etree.fromstring(xml).find("Persons/Person/Requests")
    assert (request.findtext("RequestOutcome"), request.findtext("Assessment/AssessmentOutcome")) == ("Y", "Y")
    assert request.findtext("Assessment/NamedPlan/PlanDetail/SENSetting") == "OLA"
    assert check(xml).problems == []


def test_a_return_outside_the_definitions_is_refused_with_the_item_and_rule_named(store: Store) -> None:
    xml, _ = build_return(store, ENGLAND, 2026, lea=LEA, now=NOW)
    bad = (xml.replace(b"<SENSetting>OLA</SENSetting>", b"<SENSetting>EOTAS</SENSetting>")
              .replace(b"<RequestOutcome>Y</RequestOutcome>", b"<RequestOutcome>B</RequestOutcome>", 1)
              .replace(b"<Week20>1</Week20>", b"<Week20>Y</Week20>")
              .replace(b"<LEA>201</LEA>", b"<LEA>W06000022</LEA>")
              .replace(b"<CeaseReason>5</CeaseReason>", b"")
              .replace(b"<RequestSource>3</RequestSource>", b"<RequestSource>3</RequestSource><Colour>red</Colour>"))
    problems = check(bad).problems
    assert "Message/Persons/Person/Requests/Assessment/NamedPlan/PlanDetail/SENSetting: 'EOTAS' is not in the " \
           "code set SENsetting (OLA, OPA, EHE, EYP, OTH, NEET, NIEC, NIEO)" in problems
    assert "Message/Persons/Person/Requests/RequestOutcome: 'B' is not in the code set RequestOutcome " \
           "(Y, N, A, W, H)" in problems
    assert "Message/Persons/Person/Requests/Assessment/Week20: 'Y' is not in the code set yes/no " \
           "(true, false, TRUE, FALSE, 1, 0)" in problems
    assert r"Message/Header/Source/LEA: 'W06000022' does not match the pattern \d{3}" in problems
    assert any(p.endswith("Colour: not an item of Requests in " + SPECIFICATION) for p in problems)
    assert any(p.endswith("CeaseDate and CeaseReason go together") for p in problems)
    no_outcome = xml.replace(b"<RequestOutcome>Y</RequestOutcome>", b"", 1)
    assert any(p.endswith("/Requests/RequestOutcome: required (a mandatory item of Requests)")
               for p in check(no_outcome).problems)
    two_plans = xml.replace(b"</NamedPlan>", b"</NamedPlan><NamedPlan><StartDate>2025-07-01</StartDate></NamedPlan>", 1)
    assert any(p.endswith("/Assessment/NamedPlan: appears more than once") for p in check(two_plans).problems)
    assert check(b"<Message><Header>").problems[0].startswith("not well-formed XML")


def test_the_command_writes_the_checked_return_and_audits_it(store: Store, sqlite_url: str, tmp_path: Path) -> None:
    from hub.cli.main import app

    out = tmp_path / "sen2.xml"
    env = {"HUB_DATABASE_URL": sqlite_url, "HUB_DATA_DIR": str(tmp_path), "HUB_LOG_LEVEL": "WARNING",
           "HUB_KAFKA_BOOTSTRAP": ""}
    done = CliRunner().invoke(app, ["returns", "sen2", "--la", ENGLAND, "--lea", LEA, "--year", "2026", "--by",
                                    "ig-officer-1", "--out", str(out)], env=env)
    assert done.exit_code == 0, done.output
    assert f"wrote the SEN2 2026 return of {ENGLAND} (LEA {LEA}): 2 person(s)" in done.output
    assert check(out.read_bytes()).problems == []
    (record,) = AuditLog(store).records(actions=["export"])
    assert (record.actor, record.data_ref, record.detail["persons"]) == ("ig-officer-1", f"SEN2 2026 {ENGLAND} LEA 201",
                                                                         2)


def test_the_command_refuses_a_welsh_authority_or_a_bad_lea_and_writes_nothing(
        store: Store, sqlite_url: str, tmp_path: Path) -> None:
    from hub.cli.main import app

    out = tmp_path / "sen2.xml"
    env = {"HUB_DATABASE_URL": sqlite_url, "HUB_DATA_DIR": str(tmp_path), "HUB_LOG_LEVEL": "WARNING",
           "HUB_KAFKA_BOOTSTRAP": ""}
    for la, lea, said in ((NEWPORT, "680", "LEA 680: agency W06000022 is an authority in Wales"),
                          (ENGLAND, "2010", "LEA '2010': give the authority's 3-digit DfE local-authority number")):
        done = CliRunner().invoke(app, ["returns", "sen2", "--la", la, "--lea", lea, "--year", "2026", "--by",
                                        "ig-officer-1", "--out", str(out)], env=env)
        assert done.exit_code != 0, done.output
        assert said in " ".join(done.output.split()), done.output
    assert not out.exists()
    assert AuditLog(store).records(actions=["export"]) == []  # no return made, none audited
