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


def consent_body(child_id: str, role: Grantor) -> dict[str, object]:
    d = Directive(id=f"d-{role.value}", child_id=child_id, made_by=child_id if role is Grantor.YOUNG_PERSON
                  else "parent-1", made_by_role=role, made_at=MADE, decision=DirectiveDecision.PERMIT,
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
