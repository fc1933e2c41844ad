"""Property-based tests of the consent engine over random directive sets (consent/engine.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent import (
    RESTRICTED_CATEGORIES,
    Basis,
    Category,
    Child,
    ConsentEngine,
    Directive,
    DirectiveDecision,
    Grantor,
    Information,
    Outcome,
    Override,
    OverrideScope,
    Period,
    Provision,
    Purpose,
    Recipient,
    RecipientKind,
    Scope,
    Sector,
    load_ruleset,
)

ENGINE = ConsentEngine(load_ruleset())
RULE_IDS = set(load_ruleset().rules)
T0 = datetime(2025, 1, 1, tzinfo=UTC)
CHILD = "CHqzx001"
PARENT = "PAqzx001"
SIBLING = "CHqzx002"
AGENCIES = ["AGqxa", "AGqxb", "AGqxc"]
PROS = ["PRqza", "PRqzb", "PRqzc"]
SERVICES = ["SVqza", "SVqzb"]
ROLES = ["RLqza", "RLqzb"]
# identifiers that must never appear in reasons
INPUT_IDS = [CHILD, PARENT, SIBLING, *AGENCIES, *PROS, *SERVICES, *ROLES, "EVqzx", "DRqzx", "OVqzx", "NPqzx"]

settings.register_profile(
    "consent", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("consent")


def t(hours: int) -> datetime:
    return T0 + timedelta(hours=hours)


hours = st.integers(min_value=0, max_value=200)


@st.composite
def periods(draw: st.DrawFn) -> Period | None:
    if not draw(st.booleans()):
        return None
    a = draw(st.one_of(st.none(), hours))
    b = draw(st.one_of(st.none(), hours))
    if a is not None and b is not None:
        if a == b:
            b = a + 1
        a, b = min(a, b), max(a, b)
    return Period(None if a is None else t(a), None if b is None else t(b))


def subset_of(pool: list) -> st.SearchStrategy:
    return st.one_of(st.none(), st.frozensets(st.sampled_from(pool), min_size=1))


@st.composite
def scopes(draw: st.DrawFn) -> Scope:
    return Scope(
        agency_ids=draw(subset_of(AGENCIES)),
        sectors=draw(subset_of(list(Sector))),
        services=draw(subset_of(SERVICES)),
        roles=draw(subset_of(ROLES)),
        professional_ids=draw(subset_of(PROS)),
        categories=draw(subset_of(list(Category))),
        purposes=draw(subset_of(list(Purpose))),
        data_period=draw(periods()),
        period=draw(periods()),
    )


def _narrow_set(draw: st.DrawFn, parent: frozenset | None, pool: list) -> frozenset | None:
    if parent is None:
        return draw(subset_of(pool))
    return draw(st.frozensets(st.sampled_from(sorted(parent)), min_size=1))


def _narrow_period(draw: st.DrawFn, parent: Period | None) -> Period | None:
    if parent is None or draw(st.booleans()):
        return parent
    lo = parent.start if parent.start is not None else T0 - timedelta(hours=10)
    hi = parent.end if parent.end is not None else T0 + timedelta(hours=300)
    span = int((hi - lo).total_seconds() // 3600)
    if span < 2:
        return parent
    a = draw(st.integers(0, span - 1))
    return Period(lo + timedelta(hours=a), lo + timedelta(hours=draw(st.integers(a + 1, span))))


@st.composite
def narrower(draw: st.DrawFn, parent: Scope) -> Scope:
    return Scope(
        agency_ids=_narrow_set(draw, parent.agency_ids, AGENCIES),
        sectors=_narrow_set(draw, parent.sectors, list(Sector)),
        services=_narrow_set(draw, parent.services, SERVICES),
        roles=_narrow_set(draw, parent.roles, ROLES),
        professional_ids=_narrow_set(draw, parent.professional_ids, PROS),
        categories=_narrow_set(draw, parent.categories, list(Category)),
        purposes=_narrow_set(draw, parent.purposes, list(Purpose)),
        data_period=_narrow_period(draw, parent.data_period),
        period=_narrow_period(draw, parent.period),
    )


@st.composite
def provisions(draw: st.DrawFn, decision: DirectiveDecision, parent: Scope, depth: int) -> Provision:
    scope = draw(narrower(parent))
    kids: tuple[Provision, ...] = ()
    if depth < 2:
        kids = tuple(draw(st.lists(provisions(decision.opposite(), scope, depth + 1), max_size=2)))
    return Provision(decision, scope, kids)


@st.composite
def directives(draw: st.DrawFn, did: str) -> Directive:
    decision = draw(st.sampled_from(list(DirectiveDecision)))
    scope = draw(scopes())
    exceptions = tuple(draw(st.lists(provisions(decision.opposite(), scope, 1), max_size=2)))
    made = draw(hours)
    withdrawn = draw(st.one_of(st.none(), st.integers(made, 220)))
    return Directive(
        id=did,
        child_id=CHILD,
        made_by=PARENT,
        made_by_role=Grantor.PARENT,
        made_at=t(made),
        decision=decision,
        scope=scope,
        exceptions=exceptions,
        withdrawn_at=None if withdrawn is None else t(withdrawn),
    )


@st.composite
def directive_sets(draw: st.DrawFn, max_size: int = 6) -> list[Directive]:
    n = draw(st.integers(0, max_size))
    return [draw(directives(f"DRqzx{i:02d}")) for i in range(n)]


@st.composite
def overrides(draw: st.DrawFn) -> list[Override]:
    if not draw(st.booleans()):
        return []
    start = draw(hours)
    return [
        Override(
            id="OVqzx",
            child_id=CHILD,
            named_person="NPqzx",
            justification="Risk of significant harm reported by school; seeking consent would increase risk.",
            start=t(start),
            end=t(start + draw(st.integers(1, 100))),
            scope=OverrideScope(
                frozenset(draw(st.frozensets(st.sampled_from(AGENCIES), min_size=1))),
                draw(subset_of(list(Category))),
            ),
        )
    ]


@st.composite
def infos(draw: st.DrawFn) -> Information:
    hold = draw(st.booleans())
    return Information(
        id="EVqzx",
        kind=draw(st.sampled_from(["report", "assessment", "plan", "diagnosis", "appointment", "note"])),
        category=draw(st.sampled_from(list(Category))),
        agency_id=draw(st.sampled_from(AGENCIES)),
        sector=draw(st.sampled_from([Sector.HEALTH, Sector.SOCIAL_CARE, Sector.EDUCATION])),
        about=draw(st.sampled_from([CHILD, CHILD, CHILD, PARENT, SIBLING])),
        in_record_of=CHILD,
        issued_at=t(draw(hours)),
        disclosure_hold=hold,
        released=hold and draw(st.booleans()),
    )


@st.composite
def professionals(draw: st.DrawFn) -> Recipient:
    return Recipient(
        draw(st.sampled_from([RecipientKind.AGENCY_PROFESSIONAL, RecipientKind.COORDINATOR])),
        agency_id=draw(st.sampled_from(AGENCIES)),
        sector=draw(st.sampled_from([Sector.HEALTH, Sector.SOCIAL_CARE, Sector.EDUCATION])),
        service=draw(st.sampled_from([*SERVICES, "sen_team", None])),
        role=draw(st.sampled_from([*ROLES, None])),
        professional_id=draw(st.sampled_from([*PROS, None])),
    )


family_members = st.builds(
    Recipient,
    st.just(RecipientKind.FAMILY),
    person_id=st.sampled_from([PARENT, SIBLING]),
    has_parental_responsibility=st.booleans(),
)
recipients = st.one_of(
    professionals(),
    professionals(),
    family_members,
    st.just(Recipient(RecipientKind.YOUNG_PERSON, person_id=CHILD)),
)
children = st.sampled_from([Child(CHILD, date(2015, 5, 5)), Child(CHILD, date(2008, 12, 1))])


def _decide(kid, ds, ovs, info, recipient, purpose, at):
    return ENGINE.decide(info, recipient, purpose, at, ENGINE.compile(kid, ds, ovs))


@given(children, directive_sets(), overrides(), infos(), recipients, st.sampled_from(list(Purpose)), hours)
def test_every_permit_has_a_permitting_basis(kid, ds, ovs, info, recipient, purpose, h):
    at = t(h)
    d = _decide(kid, ds, ovs, info, recipient, purpose, at)
    assert d.rule_id in RULE_IDS
    assert d.reasons and all(r.strip() for r in d.reasons)
    if d.outcome is not Outcome.PERMIT:
        return
    assert d.basis is not Basis.NONE
    by_id = {x.id: x for x in ds}
    if d.basis is Basis.CONSENT:
        assert d.directive_ids and d.rule_id == "R5-directive-permit"
        for did in d.directive_ids:
            assert by_id[did].in_force(at)
        if info.category in RESTRICTED_CATEGORIES:
            assert any(_names_category(by_id[did], info.category) for did in d.directive_ids)
    elif d.basis is Basis.SAFEGUARDING:
        assert d.override_id is not None and d.requires_ig_review
        ov = next(o for o in ovs if o.id == d.override_id)
        assert ov.start <= at < ov.end and purpose is Purpose.SAFEGUARDING
    elif d.basis is Basis.STATUTORY_DUTY:
        assert purpose is Purpose.EHC_NEEDS_ASSESSMENT and d.notify_family
    elif d.basis is Basis.DIRECT_CARE:
        assert recipient.agency_id == info.agency_id and purpose is Purpose.DIRECT_CARE
    elif d.basis is Basis.RIGHT_OF_ACCESS:
        assert recipient.kind in (RecipientKind.FAMILY, RecipientKind.YOUNG_PERSON)
    if info.about != info.in_record_of:
        assert recipient.person_id == info.about


def _names_category(directive: Directive, category: Category) -> bool:
    def walk(p_decision, scope, exceptions) -> bool:
        here = (
            p_decision is DirectiveDecision.PERMIT
            and scope.categories is not None
            and category in scope.categories
        )
        return here or any(walk(e.decision, e.scope, e.exceptions) for e in exceptions)

    return walk(directive.decision, directive.scope, directive.exceptions)


@st.composite
def matching_scope(draw: st.DrawFn, info: Information, recipient: Recipient, purpose: Purpose) -> Scope:
    """A scope that covers this request: each dimension is None or a set containing the request's value."""

    def dim(value, pool):
        if value is None or not draw(st.booleans()):
            return None
        return frozenset({value}) | draw(st.frozensets(st.sampled_from(pool)))

    return Scope(
        agency_ids=dim(recipient.agency_id, AGENCIES),
        sectors=dim(recipient.sector, list(Sector)),
        services=dim(recipient.service, SERVICES),
        roles=dim(recipient.role, ROLES),
        professional_ids=dim(recipient.professional_id, PROS),
        categories=frozenset({info.category}) | draw(st.frozensets(st.sampled_from(list(Category)))),
        purposes=dim(purpose, list(Purpose)),
    )


@st.composite
def shrink_around(draw: st.DrawFn, scope: Scope, info: Information, recipient: Recipient, purpose: Purpose):
    """A narrower scope that still covers the request."""
    values = {
        "agency_ids": recipient.agency_id,
        "sectors": recipient.sector,
        "services": recipient.service,
        "roles": recipient.role,
        "professional_ids": recipient.professional_id,
        "categories": info.category,
        "purposes": purpose,
    }
    changes = {}
    for name, value in values.items():
        current = getattr(scope, name)
        if current is not None:
            changes[name] = frozenset({value}) | draw(st.frozensets(st.sampled_from(sorted(current))))
        elif value is not None and draw(st.booleans()):
            changes[name] = frozenset({value})
    return replace(scope, **changes)


@given(st.data(), infos(), professionals(), st.sampled_from([Purpose.DIRECT_CARE, Purpose.CARE_COORDINATION]))
def test_narrower_deny_always_beats_broader_permit(data, info, recipient, purpose):
    info = replace(info, about=CHILD)
    broad = data.draw(matching_scope(info, recipient, purpose))
    narrow = data.draw(shrink_around(broad, info, recipient, purpose))
    permit = Directive("DRqzxP", CHILD, PARENT, Grantor.PARENT, t(0), DirectiveDecision.PERMIT, broad)
    deny = Directive("DRqzxD", CHILD, PARENT, Grantor.PARENT, t(0), DirectiveDecision.DENY, narrow)
    ds = data.draw(st.permutations([permit, deny]))
    d = _decide(Child(CHILD, date(2015, 1, 1)), ds, [], info, recipient, purpose, t(1))
    assert d.outcome is Outcome.DENY
    assert "DRqzxD" in d.directive_ids
    # and the same narrower scope as a nested exception inside the permit also denies
    nested = replace(permit, exceptions=(Provision(DirectiveDecision.DENY, narrow),))
    assert _decide(Child(CHILD, date(2015, 1, 1)), [nested], [], info, recipient, purpose, t(1)).outcome is (
        Outcome.DENY
    )


@given(children, directive_sets(), infos(), recipients, st.sampled_from(list(Purpose)), hours)
def test_withdrawn_directive_has_no_effect_after_withdrawal(kid, ds, info, recipient, purpose, h):
    at = t(h)
    withdrawn_ids = {d.id for d in ds if d.withdrawn_at is not None and d.withdrawn_at <= at}
    with_all = _decide(kid, ds, [], info, recipient, purpose, at)
    without = _decide(kid, [d for d in ds if d.id not in withdrawn_ids], [], info, recipient, purpose, at)
    assert with_all == without
    if with_all.outcome is Outcome.PERMIT:
        assert not set(with_all.directive_ids) & withdrawn_ids


@given(
    st.data(),
    children,
    directive_sets(),
    overrides(),
    infos(),
    recipients,
    st.sampled_from(list(Purpose)),
    hours,
)
def test_decision_is_deterministic_in_any_directive_order(data, kid, ds, ovs, info, recipient, purpose, h):
    first = _decide(kid, ds, ovs, info, recipient, purpose, t(h))
    shuffled = data.draw(st.permutations(ds))
    assert _decide(kid, shuffled, ovs, info, recipient, purpose, t(h)) == first
    assert _decide(kid, ds, ovs, info, recipient, purpose, t(h)) == first  # same inputs, same answer


@given(children, directive_sets(), overrides(), infos(), recipients, st.sampled_from(list(Purpose)), hours)
def test_reasons_never_contain_input_identifiers(kid, ds, ovs, info, recipient, purpose, h):
    d = _decide(kid, ds, ovs, info, recipient, purpose, t(h))
    text = " ".join(d.reasons)
    for ident in INPUT_IDS:
        assert ident not in text
    assert str(kid.birth_date) not in text and str(kid.birth_date) not in repr(d)
