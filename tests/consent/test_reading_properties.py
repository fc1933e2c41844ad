"""Property-based tests of the read policy (consent/reading.py, consent/rulesets/read-policy.json) and of the
hub's reader view over it (hub/sharing/visibility.py, with households built in memory: no database).

Over random households (children of random ages), entries (categories, record types, disclosure holds,
third parties), directives and readers: no read shows what an oracle written here from the issue's
rules says must not be seen, and a held entry never reaches the family.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent import (
    Category,
    Child,
    ConsentEngine,
    Directive,
    DirectiveDecision,
    Grantor,
    Purpose,
    Scope,
    Sector,
)
from consent.reading import (
    ConsentAnswer,
    EntryFacts,
    Reader,
    Relation,
    Visibility,
    explain,
    load_read_policy,
)
from hub.governance.auth import Principal
from hub.sharing.visibility import Household, ReadView, shape

POLICY = load_read_policy()
ENGINE = ConsentEngine()
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
FAMILY = {Relation.PARENT, Relation.PARENT_OF_YOUNG_PERSON, Relation.SELF, Relation.SELF_NOT_CONTROLLING}
TYPES = ["ReferralMade", "AppointmentBooked", "DiagnosisRecorded", "ReportIssued", "SocialCareOutcome",
         "EhcPlanIssued", "SchoolAttendance", "ConsentGranted"]
SECTORS = ["health", "social_care", "education", "family"]
HH = "hh-prop"


# -- the pure policy ---------------------------------------------------------------------------------------
facts = st.builds(EntryFacts, record_type=st.sampled_from(TYPES), sector=st.sampled_from(SECTORS),
                  category=st.sampled_from([c.value for c in Category]), restricted=st.booleans(),
                  family_excluded=st.booleans(), held=st.booleans(), third_party=st.booleans(),
                  statutory=st.booleans())
readers = st.builds(Reader, relation=st.sampled_from(list(Relation)), consent=st.sampled_from(list(ConsentAnswer)),
                    reason=st.booleans())


@settings(max_examples=2000, deadline=None)
@given(readers, facts)
def test_the_table_never_shows_what_the_rules_deny(reader: Reader, entry: EntryFacts) -> None:
    d = POLICY.decide(reader, entry)
    rel = reader.relation
    if rel in FAMILY and (entry.held or entry.family_excluded or entry.third_party):
        assert d.visibility is Visibility.HIDDEN  # a hold is never shown to the family
    if rel in (Relation.SIBLING, Relation.NONE, Relation.AGENCY):
        assert d.visibility is Visibility.HIDDEN
    if rel is Relation.PARENT_OF_YOUNG_PERSON and (reader.consent is ConsentAnswer.DENY or (
            entry.restricted and reader.consent is not ConsentAnswer.PERMIT)):
        assert d.visibility is Visibility.HIDDEN
    if rel is Relation.COORDINATOR:
        if entry.held:
            assert (d.visibility, d.rule_id) == (Visibility.REDACTED, "READ-hold-coordinator")
        elif entry.restricted and reader.consent is not ConsentAnswer.PERMIT:
            assert d.visibility is Visibility.HIDDEN
        if d.visibility is Visibility.SHOWN:
            assert reader.consent is ConsentAnswer.PERMIT or (entry.statutory and not entry.restricted)
    if rel is Relation.IG and not reader.reason:
        assert d.visibility is not Visibility.SHOWN
    assert d.rule_id in explain(d) and d.reason in explain(d)


# -- the hub's reader view over random households -------------------------------------------------------------
def _born(age: float) -> date:
    return (NOW - timedelta(days=365.25 * age)).date()


@st.composite
def households(draw: Any) -> tuple[Household, dict[str, list[Directive]]]:
    n = draw(st.integers(1, 3))
    hh = Household(HH)
    directives: dict[str, list[Directive]] = {}
    for i in range(n):
        cid = f"c-{i}"
        child = Child(cid, _born(draw(st.floats(0.5, 19))), None)
        hh.children[cid] = child
        ds = []
        for j in range(draw(st.integers(0, 3))):
            made = NOW - timedelta(days=draw(st.integers(1, 400)))
            young = draw(st.booleans()) and child.young_person_controls(made)
            cats = draw(st.none() | st.frozensets(st.sampled_from(list(Category)), min_size=1, max_size=3))
            purposes = draw(st.none() | st.frozensets(st.sampled_from([Purpose.CARE_COORDINATION,
                                                                       Purpose.FAMILY_COPY]), min_size=1))
            sectors = draw(st.none() | st.just(frozenset({Sector.FAMILY})) | st.just(frozenset({Sector.SOCIAL_CARE})))
            ds.append(Directive(id=f"d-{i}-{j}", child_id=cid, made_by=cid if young else "a-parent",
                                made_by_role=Grantor.YOUNG_PERSON if young else Grantor.PARENT, made_at=made,
                                decision=draw(st.sampled_from(list(DirectiveDecision))),
                                scope=Scope(categories=cats, purposes=purposes, sectors=sectors)))
        directives[cid] = ds
        hh.sets[cid] = ENGINE.compile(child, ds)
    hh.responsible = {"a-parent": True, "a-step": False}
    return hh, directives


@st.composite
def entries(draw: Any, children: list[str]) -> list[dict[str, Any]]:
    out = []
    for k in range(draw(st.integers(1, 12))):
        rt = draw(st.sampled_from(TYPES))
        out.append({"event_id": f"e-{k}", "child_id": draw(st.sampled_from(children)), "record_type": rt,
                    "sector": draw(st.sampled_from(SECTORS)), "category": draw(st.sampled_from(list(Category))).value,
                    "agency_id": draw(st.sampled_from(["7A6", "W06000022", None])),
                    "service_name": "Some service", "summary": "clinical words",
                    "occurred_at": NOW - timedelta(days=draw(st.integers(0, 300))), "held": draw(st.booleans())})
    return out


def principals(children: list[str]) -> st.SearchStrategy[Principal]:
    return st.one_of(
        st.builds(Principal, subject=st.just("p"), role=st.just("parent"), household=st.sampled_from([HH, "hh-x"]),
                  member=st.sampled_from(["a-parent", "a-step", None])),
        st.builds(Principal, subject=st.just("y"), role=st.just("young_person"), household=st.just(HH),
                  member=st.sampled_from(children)),
        st.builds(Principal, subject=st.just("cc"), role=st.just("coordinator")),
        st.builds(Principal, subject=st.just("ig"), role=st.just("ig_officer"),
                  reason=st.sampled_from([None, "an investigation with a reason"])),
        st.builds(Principal, subject=st.just("ag"), role=st.just("agency"), agency=st.just("7A6")),
    )


def coordination_permits(ds: list[Directive], entry: dict[str, Any], restricted: bool) -> bool:
    """Oracle: some directive in force permits care coordination, naming a restricted category."""
    for d in ds:
        s = d.scope
        if d.decision is not DirectiveDecision.PERMIT or d.made_at > NOW:
            continue
        if s.purposes is not None and Purpose.CARE_COORDINATION not in s.purposes:
            continue
        if s.sectors is not None and Sector.SOCIAL_CARE not in s.sectors:
            continue
        if s.categories is not None and Category(entry["category"]) not in s.categories:
            continue
        if restricted and s.categories is None:
            continue
        return True
    return False


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_no_read_returns_an_entry_the_policy_denies(data: st.DataObject) -> None:
    hh, directives = data.draw(households())
    children = sorted(hh.children)
    rows = data.draw(entries(children))
    principal = data.draw(principals(children))
    view = ReadView(principal, {HH: hh}, now=NOW)
    for row in rows:
        seen = view.present(HH, dict(row))
        child = hh.children[row["child_id"]]
        controls = child.young_person_controls(NOW)
        restricted = (row["category"] in POLICY.restricted_categories
                      or row["record_type"] in POLICY.restricted_record_types)
        family = principal.role in ("parent", "young_person")
        if principal.role == "agency" or (family and principal.household != HH):
            assert seen is None
        if family and (row["held"] or row["category"] in POLICY.family_excluded_categories):
            assert seen is None  # a hold is never shown to the family
        if principal.role == "parent" and principal.member == "a-step":
            assert seen is None  # no parental responsibility
        if principal.role == "young_person" and row["child_id"] != principal.member:
            assert seen is None  # a sibling's record
        if principal.role == "parent" and controls and restricted and seen is not None:
            assert any(d.made_by_role is Grantor.YOUNG_PERSON and d.decision is DirectiveDecision.PERMIT
                       and d.scope.categories is not None and Category(row["category"]) in d.scope.categories
                       for d in directives[row["child_id"]])
        if principal.role == "coordinator" and seen is not None:
            if row["held"]:
                assert seen["summary"].startswith("An item is held by") and seen["visibility"] == "redacted"
            elif seen["visibility"] == "shown":
                assert coordination_permits(directives[row["child_id"]], row, restricted) or (
                    row["record_type"] in POLICY.statutory_record_types and not restricted)
            if restricted and not coordination_permits(directives[row["child_id"]], row, True):
                assert row["held"]
        if seen is not None and seen["visibility"] == "redacted":
            assert "clinical words" not in str(seen) and seen["reason_code"].startswith("READ-")
            assert set(seen) <= {*POLICY.redacted_fields, "summary", "visibility", "reason_code", "reason"}
        if seen is not None and seen["visibility"] == "shown":
            assert "held" not in seen
        assert (seen is None) == (view.decide(HH, row).visibility is Visibility.HIDDEN)
        assert shape(POLICY, view.decide(HH, row), row) == seen
