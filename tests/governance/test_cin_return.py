"""A local authority's children in need census return, built from the stream and checked against the DfE fields."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree
from typer.testing import CliRunner

from connectors import social_care
from hub.core.errors import ValidationError
from hub.core.events import InboundEvent, SubjectRef
from hub.db.store import Store
from hub.demo.scenario import build
from hub.governance import cin
from hub.governance.audit import AuditLog
from hub.governance.cin import SPECIFICATION, check
from hub.governance.cin_return import build_return, period
from hub.stream import projection
from tests.governance.test_sen2_return import ENGLAND, LEA, in_england, link
from tests.sharing.sharing_support import Feeder

NOW = datetime(2025, 12, 1, 9, 0, tzinfo=UTC)
NEWPORT = "W06000022"  # the demo's authority: in Wales, which makes no CIN census return
OTHER = "E08000025"  # Birmingham, DfE number 330
LA_PERSON = "LA-200431"


def cin_events(la_code: str, person: str) -> list[InboundEvent]:
    """A referral from a GP, a child in need, a child protection plan started and ended, the case closed,
    as a council's social-care system sends them (CIN census item names)."""
    base = {"person_id": person, "la_code": la_code, "la_name": "Council", "team": "Front door"}
    rows = [dict(base, event_type="referral", event_id=f"{la_code}-REF1", occurred_at="2025-05-06T10:00:00Z",
                 ReferralSource="3A", reason="concerns raised by the GP"),
            dict(base, event_type="child_in_need", event_id=f"{la_code}-CIN1", occurred_at="2025-05-20T10:00:00Z",
                 PrimaryNeedCode="N1", worker={"id": "SW-1", "name": "A Worker", "role": "Social worker"}),
            dict(base, event_type="cp_plan_started", event_id=f"{la_code}-CP1", occurred_at="2025-06-02T10:00:00Z",
                 InitialCategoryOfAbuse="NEG", worker={"id": "SW-1", "name": "A Worker", "role": "Social worker"}),
            dict(base, event_type="cp_plan_ended", event_id=f"{la_code}-CP1-END", occurred_at="2025-10-01T10:00:00Z"),
            dict(base, event_type="case_closed", event_id=f"{la_code}-CLOSE", occurred_at="2025-11-03T10:00:00Z",
                 ReasonForClosure="RC7")]
    result = social_care.parse_payload(json.dumps(rows), "application/json")
    assert not result.problems, result.problems
    return result.events


@pytest.fixture
def store(sqlite_url: str) -> Store:
    store = Store.open(sqlite_url)
    feeder = Feeder(store, NOW)
    events = [*in_england(build(NOW).events), *cin_events(ENGLAND, LA_PERSON), *cin_events(OTHER, "LA-OTHER-7"),
              link("child-newport-9", "household-newport-9", SubjectRef("la-person-id", LA_PERSON)),
              link("child-other-1", "household-other-1", SubjectRef("la-person-id", "LA-OTHER-7"))]
    projection.apply(store, feeder.decode(events))
    return store


def children(xml: bytes) -> dict[str, etree._Element]:
    out = {}
    for child in etree.fromstring(xml).iterfind("Children/Child"):
        (comment,) = [c for c in child if not isinstance(c.tag, str)]
        out[comment.text.split()[2].rstrip(":")] = child
    return out


def items(el: etree._Element) -> list[tuple[str, str]]:
    return [(e.tag, e.text.strip()) for e in el.iter() if isinstance(e.tag, str) and e.text and e.text.strip()]


def test_the_demo_cin_return_meets_the_dfe_field_definitions(store: Store) -> None:
    xml, count = build_return(store, ENGLAND, 2026, lea=LEA, now=NOW)
    report = check(xml)
    assert report.problems == [], report.problems
    assert report.to_complete == {"LAchildID", "GenderCurrent", "Ethnicity"}  # the hub holds none of them
    assert "2025 to 2026" in SPECIFICATION
    root = etree.fromstring(xml)
    assert items(root.find("Header/CollectionDetails")) == [("Collection", "CIN"), ("Year", "2026"),
                                                            ("ReferenceDate", "2026-03-31")]
    assert root.findtext("Header/Source/LEA") == LEA and root.findtext("Header/Source/SerialNo") == "001"
    found = children(xml)
    assert set(found) == {"child-evans-1", "child-newport-9"} and count == 2

    # the demo's Cerys: referred to the disabled children's team and declined, then re-referred and served
    declined, served = found["child-evans-1"].findall("CINdetails")
    assert dict(items(declined))["ReferralNFA"] == "true" and dict(items(declined))["ReasonForClosure"] == "RC8"
    assert dict(items(declined))["CINclosureDate"] > dict(items(declined))["CINreferralDate"]
    assert dict(items(served))["ReferralSource"] == "10" and dict(items(served))["PrimaryNeedCode"] == "N0"
    assert "CINclosureDate" not in dict(items(served)) and dict(items(served))["ReferralNFA"] == "false"

    (sent,) = found["child-newport-9"].findall("CINdetails")
    assert items(sent) == [
        ("CINreferralDate", "2025-05-06"), ("ReferralSource", "3A"), ("PrimaryNeedCode", "N1"),
        ("CINclosureDate", "2025-11-03"), ("ReasonForClosure", "RC7"), ("ReferralNFA", "false"),
        ("CPPstartDate", "2025-06-02"), ("CPPendDate", "2025-10-01"), ("InitialCategoryOfAbuse", "NEG"),
        ("LatestCategoryOfAbuse", "NEG"), ("NumberOfPreviousCPP", "0")]
    assert LA_PERSON.encode() not in xml  # no LA id, UPN, NHS number or name leaves in the file


def test_the_return_holds_only_this_authoritys_children_and_only_this_period(store: Store) -> None:
    xml, count = build_return(store, OTHER, 2026, lea="330", now=NOW)
    assert set(children(xml)) == {"child-other-1"} and count == 1 and check(xml).problems == []
    _, earlier = build_return(store, ENGLAND, 2025, lea=LEA, now=NOW)  # 1 April 2024 to 31 March 2025: before them all
    assert earlier == 0
    later, next_year = build_return(store, ENGLAND, 2027, lea=LEA, now=NOW)  # only the episode still open
    assert set(children(later)) == {"child-evans-1"} and next_year == 1
    assert period(2026) == (datetime(2025, 4, 1).date(), datetime(2026, 3, 31).date())


def test_the_code_sets_are_the_social_care_mappings() -> None:
    mapping = Path(social_care.__file__).parents[1] / "mappings" / "social_care" / "la-generic.json"
    codes = json.loads(mapping.read_text())["codes"]
    by_item = {name.split(" ")[0]: set(values) for name, values in codes.items()}
    assert by_item == {"PrimaryNeedCode": set(cin.PRIMARY_NEED), "ReasonForClosure": set(cin.REASON_FOR_CLOSURE),
                       "InitialCategoryOfAbuse": set(cin.CATEGORY_OF_ABUSE),
                       "ReferralSource": set(cin.REFERRAL_SOURCE)}


def test_the_demo_authority_in_wales_and_a_bad_lea_are_refused(store: Store) -> None:
    with pytest.raises(ValidationError, match="LEA 680: agency W06000022 is an authority in Wales"):
        build_return(store, NEWPORT, 2026, lea="680", now=NOW)
    with pytest.raises(ValidationError, match="LEA 999 is not the DfE number of a local authority in England"):
        build_return(store, ENGLAND, 2026, lea="999", now=NOW)


def test_a_return_outside_the_definitions_is_refused_with_the_item_named(store: Store) -> None:
    xml, _ = build_return(store, ENGLAND, 2026, lea=LEA, now=NOW)
    bad = (xml.replace(b"<ReferralSource>3A</ReferralSource>", b"<ReferralSource>3G</ReferralSource>")
              .replace(b"<ReasonForClosure>RC7</ReasonForClosure>", b"")
              .replace(b"<CPPendDate>2025-10-01</CPPendDate>",
                       b"<CPPendDate>2025-05-01</CPPendDate><Colour>red</Colour>")
              .replace(b"<ReferralNFA>false</ReferralNFA>", b"<ReferralNFA>maybe</ReferralNFA>", 1))
    problems = check(bad).problems
    assert any(p.endswith("CINdetails/ReferralSource: '3G' is not in the code set ReferralSource (1A, 1B, 1C, 1D, "
                          "2A, 2B, 3A, 3B, 3C, 3D, 3E, 3F, 4, 5A, 5B, 5C, 5D, 6, 7, 8, 9, 10)")
               for p in problems), problems
    assert any(p.endswith("Colour: not an item of ChildProtectionPlans in " + SPECIFICATION) for p in problems)
    assert any(p.endswith("CINclosureDate and ReasonForClosure go together") for p in problems)
    assert any(p.endswith("CPPendDate is before CPPstartDate") for p in problems)
    assert any(p.endswith("ReferralNFA: 'maybe' is not in the code set yes/no (true, false, TRUE, FALSE, 1, 0)")
               for p in problems)
    nfa_first = re.search(rb"<ReferralNFA>false</ReferralNFA>\s*<ChildProtectionPlans>", xml)
    assert nfa_first is not None  # the schema's order: ReferralNFA before the child protection plans
    late_nfa = (xml[:nfa_first.start()] + b"<ChildProtectionPlans>" + xml[nfa_first.end():]).replace(
        b"</ChildProtectionPlans>", b"</ChildProtectionPlans><ReferralNFA>false</ReferralNFA>", 1)
    assert any("items out of the specification's order" in p for p in check(late_nfa).problems)
    assert check(b"<Message><Header>").problems[0].startswith("not well-formed XML")


def test_the_command_writes_the_checked_return_and_audits_it(store: Store, sqlite_url: str, tmp_path: Path) -> None:
    from hub.cli.main import app

    out = tmp_path / "cin.xml"
    env = {"HUB_DATABASE_URL": sqlite_url, "HUB_DATA_DIR": str(tmp_path), "HUB_LOG_LEVEL": "WARNING",
           "HUB_KAFKA_BOOTSTRAP": ""}
    done = CliRunner().invoke(app, ["returns", "cin", "--la", ENGLAND, "--lea", LEA, "--year", "2026", "--by",
                                    "ig-officer-1", "--out", str(out)], env=env)
    assert done.exit_code == 0, done.output
    assert f"wrote the CIN census 2026 return of {ENGLAND} (LEA {LEA}): 2 child(ren)" in done.output
    assert check(out.read_bytes()).problems == []
    (record,) = AuditLog(store).records(actions=["export"])
    assert (record.actor, record.data_ref, record.detail["children"]) == ("ig-officer-1", f"CIN 2026 {ENGLAND} LEA 201",
                                                                          2)

    refused = CliRunner().invoke(app, ["returns", "cin", "--la", NEWPORT, "--lea", "680", "--year", "2026", "--by",
                                       "ig-officer-1", "--out", str(tmp_path / "bad.xml")], env=env)
    assert refused.exit_code != 0 and "an authority in Wales" in " ".join(refused.output.split())
    assert not (tmp_path / "bad.xml").exists() and len(AuditLog(store).records(actions=["export"])) == 1
