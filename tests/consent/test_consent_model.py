"""Model validation and errors (consent/model.py, consent/errors.py)."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from consent_factories import CAV, CHILD_ID, PARENT_ID, at

import consent
from consent import (
    Category,
    Child,
    ConsentError,
    Directive,
    DirectiveDecision,
    FhirMappingError,
    Grantor,
    Information,
    InvalidDirectiveError,
    InvalidOverrideError,
    InvalidRequestError,
    Period,
    Provision,
    Recipient,
    RecipientKind,
    RuleSetError,
    Scope,
    Sector,
)

P, D = DirectiveDecision.PERMIT, DirectiveDecision.DENY


def test_error_hierarchy():
    for err in (
        InvalidDirectiveError,
        InvalidOverrideError,
        InvalidRequestError,
        RuleSetError,
        FhirMappingError,
    ):
        assert issubclass(err, ConsentError)
    assert issubclass(ConsentError, Exception)


def test_consent_does_not_import_the_hub():
    import sys

    import consent.engine
    import consent.fhir  # noqa: F401

    for mod in list(sys.modules.values()):
        if getattr(mod, "__name__", "").startswith("consent"):
            src = getattr(mod, "__file__", None) or ""
            if src.endswith(".py"):
                with open(src, encoding="utf-8") as fh:
                    text = fh.read()
                assert "import hub" not in text and "from hub" not in text


def test_exception_must_be_opposite_and_narrower():
    parent_scope = Scope(agency_ids=frozenset({CAV}))
    with pytest.raises(InvalidDirectiveError, match="opposite"):
        Directive(
            "d1", CHILD_ID, PARENT_ID, Grantor.PARENT, at(0), P, parent_scope, (Provision(P, parent_scope),)
        )
    with pytest.raises(InvalidDirectiveError, match="narrower"):
        Directive(
            "d1",
            CHILD_ID,
            PARENT_ID,
            Grantor.PARENT,
            at(0),
            P,
            parent_scope,
            (Provision(D, Scope(agency_ids=frozenset({CAV, "other"}))),),
        )
    with pytest.raises(InvalidDirectiveError, match="narrower"):
        Directive(
            "d1",
            CHILD_ID,
            PARENT_ID,
            Grantor.PARENT,
            at(0),
            P,
            Scope(period=Period(at(0), at(5))),
            (Provision(D, Scope(period=Period(at(0), at(6)))),),
        )
    with pytest.raises(InvalidDirectiveError, match="opposite"):
        Provision(P, parent_scope, (Provision(P, parent_scope),))


def test_scope_and_period_validation():
    with pytest.raises(InvalidDirectiveError, match="non-empty"):
        Scope(agency_ids=frozenset())
    with pytest.raises(InvalidDirectiveError, match="sectors"):
        Scope(sectors=frozenset({"space"}))  # type: ignore[arg-type]
    with pytest.raises(InvalidDirectiveError, match="start before"):
        Period(at(5), at(1))
    with pytest.raises(InvalidDirectiveError, match="timezone"):
        Period(datetime(2025, 1, 1), None)
    assert Scope(sectors=frozenset({"health"})).sectors == frozenset({Sector.HEALTH})  # type: ignore[arg-type]


def test_directive_validation():
    with pytest.raises(InvalidDirectiveError, match="withdrawn before"):
        Directive("d1", CHILD_ID, PARENT_ID, Grantor.PARENT, at(5), P, withdrawn_at=at(1))
    with pytest.raises(InvalidDirectiveError, match="own record"):
        Directive("d1", CHILD_ID, PARENT_ID, Grantor.YOUNG_PERSON, at(5), P)
    with pytest.raises(InvalidDirectiveError, match="id must not be empty"):
        Directive("", CHILD_ID, PARENT_ID, Grantor.PARENT, at(5), P)


def test_request_validation():
    with pytest.raises(InvalidRequestError, match="agency"):
        Recipient(RecipientKind.AGENCY_PROFESSIONAL, sector=Sector.HEALTH)
    with pytest.raises(InvalidRequestError, match="timezone"):
        Information("e", "report", Category.GENERAL, "a", Sector.HEALTH, "c", "c", datetime(2025, 1, 1))


def test_specificity_order():
    levels = [
        Scope(),
        Scope(sectors=frozenset({Sector.HEALTH})),
        Scope(agency_ids=frozenset({CAV})),
        Scope(services=frozenset({"paeds"})),
        Scope(professional_ids=frozenset({"p"})),
    ]
    assert [s.specificity() for s in levels] == sorted(s.specificity() for s in levels)
    assert Scope(categories=frozenset({Category.CLINICAL})).specificity() > Scope().specificity()


def test_child_turns_16_and_birth_date_not_in_repr():
    kid = Child(CHILD_ID, date(2009, 2, 28))
    assert not kid.young_person_controls(at(0).replace(year=2025, month=2, day=27))
    assert kid.young_person_controls(at(0).replace(year=2025, month=2, day=28))
    leap = Child(CHILD_ID, date(2008, 2, 29))
    assert not leap.young_person_controls(at(0).replace(year=2024, month=2, day=28))
    assert "2009" not in repr(kid)


def test_public_api_exports():
    for name in consent.__all__:
        assert hasattr(consent, name)
    assert "specificity" in (consent.__doc__ or "").lower()
