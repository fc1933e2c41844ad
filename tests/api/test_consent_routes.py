"""Consent routes: nobody records a directive in another family member's name (real app, real broker)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from consent import Directive, DirectiveDecision, Grantor, Purpose, Scope, Sector
from consent.fhir import directive_to_fhir_dict
from hub.ingest.services import Services
from tests.api.conftest import token_header

MADE = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def consent_body(child_id: str, role: Grantor, directive_id: str | None = None) -> dict[str, object]:
    d = Directive(id=directive_id or f"d-{role.value}", child_id=child_id,
                  made_by=child_id if role is Grantor.YOUNG_PERSON else "parent-1", made_by_role=role,
                  made_at=MADE, decision=DirectiveDecision.PERMIT,
                  scope=Scope(sectors=frozenset({Sector.HEALTH}), purposes=frozenset({Purpose.DIRECT_CARE})))
    return directive_to_fhir_dict(d)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_parent_cannot_consent_as_the_young_person_nor_the_young_person_as_a_parent(
        client: httpx.AsyncClient, services: Services) -> None:
    url = "/v1/households/hh-1/children/c-1/consents"
    parent = token_header(services, "parent", "parent-1", household="hh-1")
    r = await client.post(url, json=consent_body("c-1", Grantor.YOUNG_PERSON), headers=parent)
    assert r.status_code == 403, r.text
    assert r.json()["detail"] == "a parent may not record a directive as the young person"
    young = token_header(services, "young_person", "yp-1", household="hh-1", member="c-1")
    r = await client.post(url, json=consent_body("c-1", Grantor.PARENT), headers=young)
    assert r.status_code == 403, r.text
    assert r.json()["detail"] == "a young person records directives in their own name"
    assert services.store.log_count() == 0  # nothing was accepted


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
async def test_a_retried_consent_and_a_second_one_before_the_first_is_applied_are_both_accepted(
        client: httpx.AsyncClient, services: Services) -> None:
    """A sender that lost the answer sends the same Consent again, and a family may give a second one before
    the worker applied the first: neither is refused as a conflict over the hub's own child link."""
    from hub.demo.journey import report_not_sent_journey
    from hub.family.enrolment import Enrolment
    from tests.sharing.sharing_support import Feeder

    enrol = Enrolment(services.store, None)  # type: ignore[arg-type]  # the NHS-number link is fed below
    household = enrol.create_household("cc-1")
    child = enrol.add_member(household, "child", "child").member_id
    j = report_not_sent_journey(MADE, seed=611, child_id=child, household_id=household)
    Feeder(services.store, MADE).feed(j.before_consent[:1], MADE)  # the worker projected the NHS-number link
    url = f"/v1/households/{household}/children/{child}/consents"
    coordinator = token_header(services, "coordinator", "cc-1")
    first, second = consent_body(child, Grantor.PARENT), consent_body(child, Grantor.PARENT, "d-parent-2")
    answers = []
    for body in (first, first, second):  # the hub-child-id link is not projected between them
        r = await client.post(url, json=body, headers=coordinator)
        assert r.status_code == 202, r.text
        answers.append(r.json())
    assert [a["directive_id"] for a in answers] == ["d-parent", "d-parent", "d-parent-2"]
    # the link once (then answered as a duplicate), the first Consent in two versions, the second once
    assert services.store.log_count() == 4


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_consent_whose_id_looks_like_an_nhs_number_is_refused_with_the_rule_not_the_value(
        client: httpx.AsyncClient, services: Services) -> None:
    """The directive id is kept in the audit trail: one shaped like a personal identifier is refused (422,
    naming the field and the rule), never a 500, and nothing is accepted."""
    from hub.demo.identifiers import nhs_number
    from hub.demo.journey import report_not_sent_journey
    from hub.family.enrolment import Enrolment
    from tests.sharing.sharing_support import Feeder

    enrol = Enrolment(services.store, None)  # type: ignore[arg-type]
    household = enrol.create_household("cc-1")
    child = enrol.add_member(household, "child", "child").member_id
    Feeder(services.store, MADE).feed(report_not_sent_journey(MADE, seed=612, child_id=child,
                                                              household_id=household).before_consent[:1], MADE)
    logged = services.store.log_count()
    nhs = nhs_number(612)
    r = await client.post(f"/v1/households/{household}/children/{child}/consents",
                          json=consent_body(child, Grantor.PARENT, f"consent-{nhs}"),
                          headers=token_header(services, "coordinator", "cc-1"))
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["pointer"] == "/id" and "must not look like an NHS number" in r.text
    assert nhs not in r.text
    assert services.store.log_count() == logged
