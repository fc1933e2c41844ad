"""The read policy, route by route: every family-data route, called as every kind of reader, answers
exactly what the policy table (consent/rulesets/read-policy.json) says that reader may see.

One household: a parent with parental responsibility, an 18-year-old young person and her 7-year-old
brother, each with entries of every kind that matters (general health, CAMHS, safeguarding, a
social-care outcome, a diagnosis under a disclosure hold, a report); the parents share the brother's
general and clinical record with care coordination, the young person refuses her parents her clinical
record. The expected answer for each (reader, entry) is computed from the pure policy with facts the
test works out itself (who the reader is to the child; what the consent engine says of the directives),
and each route's answer is compared with it: no entry the policy hides, redacted entries without
their details, pages never short, cursors naming only visible entries. SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn

from consent import (
    Category,
    ConsentEngine,
    Directive,
    DirectiveDecision,
    DirectiveSet,
    Grantor,
    Information,
    Purpose,
    Recipient,
    RecipientKind,
    Scope,
    Sector,
)
from consent.fhir import directive_to_fhir_dict
from consent.model import Child
from consent.reading import ConsentAnswer, Reader, Relation, Visibility, load_read_policy
from hub.api.app import create_app
from hub.core.events import InboundEvent, SubjectRef
from hub.db.schema import identity_links, timeline_entries
from hub.db.sealed import sealer
from hub.demo.identifiers import nhs_number
from hub.family.enrolment import Enrolment
from hub.ingest.services import Services
from hub.kafka.broker import free_port
from tests.api.conftest import token_header
from tests.sharing.sharing_support import Feeder, deliver

pytestmark = pytest.mark.broker
NOW = datetime.now(UTC).replace(microsecond=0)
GP = {"agency_id": "7A6", "sector": "health", "service_name": "Community paediatrics"}
CAMHS = {"agency_id": "7A6", "sector": "health", "service_name": "CAMHS"}
LA = {"agency_id": "W06000022", "sector": "social_care", "service_name": "Children with Disabilities Team"}
SAFEGUARDING = {"agency_id": "W06000022", "sector": "social_care", "service_name": "Safeguarding hub"}
REASON = "investigating complaint IG-2291 about access"


def years_ago(n: int) -> date:
    return NOW.date().replace(year=NOW.year - n) - timedelta(days=30)


@dataclass
class World:
    household: str
    parent: str
    young: str
    sibling: str
    other_household: str
    other_parent: str
    directives: dict[str, list[Directive]] = field(default_factory=dict)
    ident: dict[str, SubjectRef] = field(default_factory=dict)


def ev(rt: str, sid: str, who: SubjectRef, days: float, body: dict[str, Any], *, sector: str = "health",
       category: str = "general") -> InboundEvent:
    return InboundEvent(record_type=rt, sector=sector, source_system="matrix", source_id=sid,  # type: ignore[arg-type]
                        occurred_at=NOW + timedelta(days=days), subject=who, body=body, category=category)


def entries_of(child: str, who: SubjectRef, base: float) -> list[InboundEvent]:
    """One child's record: every category the policy distinguishes."""
    ahead = NOW + timedelta(days=20 + base)
    return [
        ev("ReferralMade", f"{child}-gen-ref", who, -90 + base, {"service": GP}),
        ev("AppointmentBooked", f"{child}-gen-appt", who, -80 + base, {"service": GP, "start": ahead,
                                                                       "professional": {"id": "dr-gp",
                                                                                        "role": "paediatrician"}}),
        ev("ReferralMade", f"{child}-camhs-ref", who, -70 + base, {"service": CAMHS}, category="mental_health"),
        ev("AppointmentBooked", f"{child}-camhs-appt", who, -60 + base, {"service": CAMHS, "start": ahead},
           category="mental_health"),
        ev("SocialCareOutcome", f"{child}-safeguarding", who, -50 + base,
           {"service": SAFEGUARDING, "outcome_kind": "child_protection_plan_started"}, sector="social_care",
           category="child_protection"),
        ev("SocialCareOutcome", f"{child}-sc-outcome", who, -40 + base,
           {"service": LA, "outcome_kind": "short_break"}, sector="social_care", category="social_care"),
        ev("DiagnosisRecorded", f"{child}-held-dx", who, -30 + base,
           {"service": GP, "display": "a diagnosis not yet told", "disclosure_hold": True}, category="clinical"),
        ev("ReportIssued", f"{child}-report", who, -20 + base,
           {"service": GP, "report_id": f"r-{child}", "report_kind": "paediatric", "title": f"Clinic letter {child}"},
           category="clinical"),
    ]


def consent_event(d: Directive, who: SubjectRef) -> InboundEvent:
    by = "young_person" if d.made_by_role is Grantor.YOUNG_PERSON else "family"
    return InboundEvent(record_type="ConsentGranted", sector="family", source_system="hub-consent", source_id=d.id,
                        occurred_at=d.made_at, subject=who,
                        body={"directive_id": d.id, "granted_by": by,
                              "fhir_consent": json.dumps(directive_to_fhir_dict(d))})


def build(services: Services) -> World:
    store = services.store
    enrol = Enrolment(store, None)  # type: ignore[arg-type]  # identifiers are linked by events below
    hh = enrol.create_household("cc-home")
    parent = enrol.add_member(hh, "adult", "mother", parental_responsibility=True).member_id
    young = enrol.add_member(hh, "child", "child", date_of_birth=years_ago(18)).member_id
    sibling = enrol.add_member(hh, "child", "child", date_of_birth=years_ago(7)).member_id
    other = enrol.create_household("cc-away")
    other_parent = enrol.add_member(other, "adult", "father", parental_responsibility=True).member_id
    w = World(hh, parent, young, sibling, other, other_parent)
    w.ident = {young: SubjectRef("nhs-number", nhs_number(7101)), sibling: SubjectRef("nhs-number", nhs_number(7102))}
    made = NOW - timedelta(days=200)
    w.directives = {
        sibling: [Directive(id="parents-to-coordination", child_id=sibling, made_by=parent,
                            made_by_role=Grantor.PARENT, made_at=made, decision=DirectiveDecision.PERMIT,
                            scope=Scope(purposes=frozenset({Purpose.CARE_COORDINATION}),
                                        categories=frozenset({Category.GENERAL, Category.CLINICAL})))],
        young: [Directive(id="young-refuses-parents-clinical", child_id=young, made_by=young,
                          made_by_role=Grantor.YOUNG_PERSON, made_at=made, decision=DirectiveDecision.DENY,
                          scope=Scope(sectors=frozenset({Sector.FAMILY}), categories=frozenset({Category.CLINICAL})))],
    }
    feeder = Feeder(store, NOW)
    links = [InboundEvent(record_type="IdentityLinked", sector="hub", source_system="hub-enrolment",
                          source_id=f"link-{c}", occurred_at=NOW - timedelta(days=400), subject=w.ident[c],
                          body={"action": "link", "child_id": c, "household_id": hh,
                                "identifier_system": "nhs-number", "reason": "enrolled"})
             for c in (young, sibling)]
    feeder.feed(links, NOW)
    consents = [consent_event(d, w.ident[c]) for c, ds in w.directives.items() for d in ds]
    feeder.feed(consents, NOW)
    records = entries_of(sibling, w.ident[sibling], 0) + entries_of(young, w.ident[young], 1)
    # last of all, an entry every reader of the young person's record may see (the streams end on it)
    records.append(ev("ReferralMade", f"{young}-last", w.ident[young], -1, {"service": GP}))
    for r in records:
        feeder.feed([r], NOW)
    deliver(store, NOW)
    return w


# -- the oracle: the policy, with facts worked out here ---------------------------------------------------------
@dataclass(frozen=True)
class Who:
    name: str
    role: str
    claims: dict[str, str]
    status: int = 200  # what the household routes answer (404 outside the relationship, 403 wrong role)
    reason: bool = False


def readers(w: World) -> list[Who]:
    return [
        Who("parent", "parent", {"household": w.household, "member": w.parent}),
        Who("young person", "young_person", {"household": w.household, "member": w.young}),
        Who("other household's parent", "parent", {"household": w.other_household, "member": w.other_parent}, 404),
        Who("coordinator", "coordinator", {}),
        Who("another coordinator", "coordinator", {}, 404),
        Who("agency outside the team", "agency", {"agency": "X99"}, 403),
        Who("IG with a reason", "ig_officer", {}, reason=True),
        Who("IG without a reason", "ig_officer", {}, 403),
    ]


def subject_of(who: Who) -> str:
    return {"coordinator": "cc-home", "another coordinator": "cc-away"}.get(who.name, f"user-{who.name[:6]}")


def relation(w: World, who: Who, child: str) -> Relation:
    if who.role == "coordinator":
        return Relation.COORDINATOR
    if who.role == "ig_officer":
        return Relation.IG
    if who.role == "parent":
        return Relation.PARENT_OF_YOUNG_PERSON if child == w.young else Relation.PARENT
    if who.role == "young_person":
        return Relation.SELF if child == w.young else Relation.SIBLING
    return Relation.NONE


def consent_answer(w: World, rel: Relation, child: str, row: dict[str, Any]) -> ConsentAnswer:
    engine = ConsentEngine()
    born = years_ago(18) if child == w.young else years_ago(7)
    ds: DirectiveSet = engine.compile(Child(child, born), w.directives.get(child, []))
    policy = load_read_policy()
    category = Category(row["category"])
    if row["record_type"] in policy.restricted_record_types:
        ds = DirectiveSet(ds.child, ds.directives, ds.overrides, ds.restricted_categories | {category})
    info = Information(id=row["event_id"], kind="entry", category=category, agency_id=row["agency_id"] or "none",
                       sector={"health": Sector.HEALTH, "social_care": Sector.SOCIAL_CARE}.get(row["sector"],
                                                                                              Sector.FAMILY),
                       about=child, in_record_of=child, issued_at=row["occurred_at"])
    if rel is Relation.COORDINATOR:
        ev_ = ds.evaluate(info, Recipient(RecipientKind.COORDINATOR, agency_id="care-coordination",
                                          sector=Sector.SOCIAL_CARE, service="care_coordination",
                                          role="coordinator"), Purpose.CARE_COORDINATION, NOW)
    elif rel is Relation.PARENT_OF_YOUNG_PERSON:
        ev_ = ds.evaluate(info, Recipient(RecipientKind.FAMILY, person_id="parents"), Purpose.FAMILY_COPY, NOW,
                          young_person_only=True)
    else:
        return ConsentAnswer.NONE
    return ConsentAnswer.NONE if ev_.decision is None else ConsentAnswer(ev_.decision.value)


def stored_entries(services: Services, household: str) -> list[dict[str, Any]]:
    T, L = timeline_entries.c, identity_links.c
    q = (sa.select(L.child_id, T.event_id, T.record_type, T.sector, T.category, T.agency_id, T.service_name,
                   T.occurred_at, T.record)
         .select_from(identity_links.join(timeline_entries, T.subject == L.subject))
         .where(L.household_id == household, L.active.is_(True), T.status == "active")
         .order_by(T.occurred_at, T.event_id))
    with services.store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(q)]
    seal = sealer(services.store)  # records are sealed at rest under their subject's key
    for r in rows:
        r["occurred_at"] = r["occurred_at"].replace(tzinfo=UTC) if r["occurred_at"].tzinfo is None \
            else r["occurred_at"]
        r["held"] = bool(seal.json(T.record, r["event_id"], r.pop("record")).get("disclosure_hold"))
    return rows


def expected(w: World, who: Who, rows: list[dict[str, Any]]) -> dict[str, tuple[Visibility, str]]:
    """event id -> (visibility, rule) for every entry, as the policy table decides for this reader."""
    policy = load_read_policy()
    out = {}
    for r in rows:
        rel = relation(w, who, r["child_id"])
        facts = policy.facts(r["record_type"], r["sector"], r["category"], held=r["held"])
        d = policy.decide(Reader(rel, consent_answer(w, rel, r["child_id"], r), who.reason), facts)
        out[r["event_id"]] = (d.visibility, d.rule_id)
    return out


# -- the routes -----------------------------------------------------------------------------------------------
@pytest.fixture
def server(services: Services) -> Iterator[str]:
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(services), host="127.0.0.1", port=port, log_config=None,
                                        lifespan="off"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


def read_sse(url: str, auth: dict[str, str], n: int, last_id: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    headers = {**auth, **({"Last-Event-ID": last_id} if last_id else {})}
    out: list[tuple[str, dict[str, Any]]] = []
    with httpx.stream("GET", url, headers=headers, timeout=10) as r:
        assert r.status_code == 200, r.read()
        ev_: dict[str, str] = {}
        for line in r.iter_lines():
            if line.startswith(("id:", "data:")):
                key, _, value = line.partition(":")
                ev_[key] = value.strip()
            elif not line and "data" in ev_:
                out.append((ev_["id"], json.loads(ev_["data"])))
                ev_ = {}
                if len(out) == n:
                    break
    return out


def check_entry(entry: dict[str, Any], want: dict[str, tuple[Visibility, str]], raw: dict[str, dict[str, Any]]
                ) -> None:
    eid = entry["event_id"]
    assert eid in want and want[eid][0] is not Visibility.HIDDEN, f"hidden entry shown: {raw[eid]['record_type']}"
    assert entry["visibility"] == want[eid][0].value, (raw[eid]["record_type"], raw[eid]["category"], entry)
    if want[eid][0] is Visibility.REDACTED:
        assert entry["reason_code"] == want[eid][1]
        assert raw[eid]["record_type"] in (entry["record_type"], "DiagnosisRecorded")
        assert "not yet told" not in json.dumps(entry) and "Clinic letter" not in json.dumps(entry)
        assert set(entry) <= {"event_id", "child_id", "record_type", "sector", "agency_id", "service_name",
                              "occurred_at", "summary", "visibility", "reason_code", "reason", "seq",
                              "household_id", "kind"}


async def timeline_pages(client: httpx.AsyncClient, hh: str, auth: dict[str, str], limit: int,
                         **filters: str) -> tuple[list[dict[str, Any]], list[str]]:
    entries: list[dict[str, Any]] = []
    cursors: list[str] = []
    cursor = None
    while True:
        params = {**filters, "limit": str(limit), **({"cursor": cursor} if cursor else {})}
        r = await client.get(f"/v1/households/{hh}/timeline", params=params, headers=auth)
        assert r.status_code == 200, r.text
        page = r.json()
        cursor = page["next_cursor"]
        if cursor:
            assert len(page["entries"]) == limit  # a page is never short because of hidden entries
            cursors.append(cursor)
        entries += page["entries"]
        if not cursor:
            return entries, cursors


def cursor_id(cursor: str) -> str:
    return str(json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))[1])


async def test_every_family_route_answers_what_the_read_policy_says(
        client: httpx.AsyncClient, services: Services, server: str) -> None:
    w = await asyncio.to_thread(build, services)
    Enrolment(services.store, None).assign("cc-away", w.other_household, by="admin")  # type: ignore[arg-type]
    rows = stored_entries(services, w.household)
    raw = {r["event_id"]: r for r in rows}
    assert len(rows) >= 19 and any(r["held"] for r in rows)
    hh = w.household
    for who in readers(w):
        auth = token_header(services, who.role, subject_of(who), **who.claims)
        if who.reason:
            auth["X-Investigation-Reason"] = REASON
        if who.status != 200:
            for path in ("timeline", "appointments", "family-copies", "transparency", "readiness", "shares",
                         f"children/{w.sibling}/team"):
                if who.role == "ig_officer" and path == "shares":
                    continue  # decisions, not clinical content: IG reads them without a reason (auth POLICY)
                r = await client.get(f"/v1/households/{hh}/{path}", headers=auth)
                assert r.status_code in (who.status, 403, 404), (who.name, path, r.status_code)
                assert r.status_code != 200 and "Clinic letter" not in r.text, (who.name, path)
            continue
        want = expected(w, who, rows)
        visible = [r["event_id"] for r in rows if want[r["event_id"]][0] is not Visibility.HIDDEN]

        # the timeline, in pages of three: exactly the visible entries, in order, cursors naming visible ones
        entries, cursors = await timeline_pages(client, hh, auth, 3)
        assert [e["event_id"] for e in entries] == visible, who.name
        for e in entries:
            check_entry(e, want, raw)
        assert len(cursors) >= 2 and all(cursor_id(c) in visible for c in cursors)
        # with filters
        for filters in ({"child_id": w.sibling}, {"sector": "health"}, {"kind": "ReferralMade"},
                        {"since": (NOW - timedelta(days=65)).isoformat()}):
            got, _ = await timeline_pages(client, hh, auth, 2, **filters)
            keep = [e for e in rows if e["event_id"] in visible
                    and all({"child_id": e["child_id"], "sector": e["sector"], "kind": e["record_type"]}.get(k, v) == v
                            for k, v in filters.items() if k != "since")
                    and (e["occurred_at"] >= NOW - timedelta(days=65) if "since" in filters else True)]
            assert [e["event_id"] for e in got] == [e["event_id"] for e in keep], (who.name, filters)

        family = who.role in ("parent", "young_person", "coordinator")
        if family:
            # the live stream and its resume: the visible entries' changes, nothing else
            url = f"{server}/v1/households/{hh}/stream"
            first = await asyncio.to_thread(read_sse, url, auth, 2)
            rest = await asyncio.to_thread(read_sse, url, auth, len(visible) - 2, first[-1][0])
            got = [d for _, d in first + rest]
            assert [d["event_id"] for d in got] == [e for e in sorted(visible, key=lambda i: seq_of(services, i))]
            for d in got:
                check_entry(d, want, raw)

            # appointments and team: only from entries the reader may see
            appts = (await client.get(f"/v1/households/{hh}/appointments", headers=auth)).json()["children"]
            for child, items in appts.items():
                assert relation(w, who, child) is not Relation.SIBLING
                for a in items:
                    assert want[a["event_id"]][0] is not Visibility.HIDDEN, (who.name, a["service"])
                    if want[a["event_id"]][0] is Visibility.REDACTED:
                        assert a["professional_id"] is None
            for child in (w.young, w.sibling):
                r = await client.get(f"/v1/households/{hh}/children/{child}/team", headers=auth)
                if relation(w, who, child) is Relation.SIBLING:
                    assert r.status_code == 404
                    continue
                seen_services = {raw[e]["service_name"] for e in visible
                                 if raw[e]["child_id"] == child and not raw[e]["held"]}
                for m in r.json()["team"]:
                    assert m["service"] in seen_services, (who.name, m["service"])
                    shown = any(want[e][0] is Visibility.SHOWN and raw[e]["service_name"] == m["service"]
                                and raw[e]["child_id"] == child for e in want)
                    assert shown or not m["professionals"]

            copies = (await client.get(f"/v1/households/{hh}/family-copies", headers=auth)).json()["copies"]
            for c in copies:
                eid = c["content"]["information"]["event_id"]
                assert want[eid][0] is not Visibility.HIDDEN, (who.name, raw[eid]["record_type"])
                if who.role == "young_person":
                    assert c["child_id"] == w.young and c["recipient"] == "young_person"
                if who.role == "parent":
                    assert c["recipient"] == "family"
            if who.role == "young_person":
                assert copies, "the young person's own report copy"
            shares = (await client.get(f"/v1/households/{hh}/shares", headers=auth)).json()["shares"]
            assert shares or who.role == "young_person"
            for sh in shares:
                assert want[sh["information_id"]][0] is not Visibility.HIDDEN, (who.name, sh["record_type"])

        if who.role == "coordinator":
            caseload = await asyncio.to_thread(read_sse, f"{server}/v1/coordinators/cc-home/stream", auth,
                                               len(visible))
            assert [d["event_id"] for _, d in caseload] == [e for e in sorted(visible,
                                                                              key=lambda i: seq_of(services, i))]
            ready = (await client.get(f"/v1/households/{hh}/readiness", headers=auth)).json()
            for c in ready["children"]:
                for a in c["appointments"]:
                    assert want[a["event_id"]][0] is not Visibility.HIDDEN
                    for item in a["reports"]:
                        assert want[item["event_id"]][0] is not Visibility.HIDDEN
                        assert "not yet told" not in json.dumps(item)
        if who.role in ("parent", "young_person"):
            view = (await client.get(f"/v1/households/{hh}/transparency", headers=auth)).json()
            for line in view["shared"]:  # each report names its child (the world's titles do): one the reader may see
                match = re.search(r"Clinic letter (\S+)", line["report"])
                assert match, line
                (report,) = [r for r in rows if r["child_id"] == match.group(1) and r["record_type"] == "ReportIssued"]
                assert relation(w, who, match.group(1)) is not Relation.SIBLING, (who.name, line)
                assert want[report["event_id"]][0] is not Visibility.HIDDEN, (who.name, line)


def seq_of(services: Services, event_id: str) -> int:
    from hub.db.schema import timeline_changes

    with services.store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.min(timeline_changes.c.seq)).where(
            timeline_changes.c.event_id == event_id)).scalar_one())


async def test_the_issue_as_reported(client: httpx.AsyncClient, services: Services) -> None:
    """The young person does not read her brother's diagnosis or report; the parent does not read her CAMHS
    referral; a held diagnosis is not on the parent's timeline, and is only "held" for the coordinator."""
    w = await asyncio.to_thread(build, services)
    hh = w.household
    young = token_header(services, "young_person", "yp", household=hh, member=w.young)
    parent = token_header(services, "parent", "mum", household=hh, member=w.parent)
    cc = token_header(services, "coordinator", "cc-home")
    raw = {r["event_id"]: r for r in stored_entries(services, hh)}

    def kinds(entries: list[dict[str, Any]], child: str) -> list[tuple[str, str]]:
        return [(raw[e["event_id"]]["record_type"], raw[e["event_id"]]["category"]) for e in entries
                if e["child_id"] == child]

    mine, _ = await timeline_pages(client, hh, young, 50)
    assert kinds(mine, w.sibling) == []
    theirs, _ = await timeline_pages(client, hh, parent, 50)
    assert ("ReferralMade", "mental_health") not in kinds(theirs, w.young)
    assert ("DiagnosisRecorded", "clinical") not in kinds(theirs, w.sibling)
    assert "not yet told" not in json.dumps(theirs, default=str)
    coordinator, _ = await timeline_pages(client, hh, cc, 50)
    held = [e for e in coordinator if raw[e["event_id"]]["record_type"] == "DiagnosisRecorded"]
    assert held and all(e["summary"] == "An item is held by Community paediatrics" for e in held)
    assert all(e["reason_code"] == "READ-hold-coordinator" and e["record_type"] == "HeldItem" for e in held)
    assert not [e for e in coordinator if raw[e["event_id"]]["category"] in ("mental_health", "child_protection")]
