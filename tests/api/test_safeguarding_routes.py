"""Who may release a disclosure hold or make a safeguarding override over HTTP, and what the family sees."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from hub.ingest.services import Services
from tests.api.api_helpers import assert_no_identifiers
from tests.api.conftest import token_header

JUSTIFICATION = "Bruising disclosed at school; strategy discussion convened under section 47."


async def test_only_the_allowed_roles_release_holds_and_make_overrides(client: httpx.AsyncClient,
                                                                      services: Services) -> None:
    cc = token_header(services, "coordinator", "cc-sg")
    hh = (await client.post("/v1/households", json={"coordinator_id": "cc-sg"}, headers=cc)).json()["household_id"]
    child = (await client.post(f"/v1/households/{hh}/members", json={"kind": "child", "relationship": "child"},
                               headers=cc)).json()["member_id"]
    body = {"recipient_agency_id": "7A4", "justification": JUSTIFICATION,
            "ends_at": (datetime.now(UTC) + timedelta(days=7)).isoformat()}
    url = f"/v1/households/{hh}/children/{child}/overrides"
    for role, subject, claims in (("coordinator", "cc-sg", {}), ("agency", "paed-1", {"agency": "7A6"}),
                                  ("parent", "p-1", {"household": hh})):
        r = await client.post(url, json=body, headers=token_header(services, role, subject, **claims))
        assert r.status_code == 403, (role, r.text)
    release = f"/v1/households/{hh}/children/{child}/holds/ev-1/release"
    parent = token_header(services, "parent", "p-1", household=hh)
    assert (await client.post(release, json={"reason": "told them"}, headers=parent)).status_code == 403
    assert (await client.post(release, json={"reason": "told them"}, headers=cc)).status_code == 403

    dsl = token_header(services, "safeguarding_lead", "dsl-1")
    made = await client.post(url, json=body, headers=dsl)
    assert made.status_code == 201, made.text
    ig = token_header(services, "ig_officer", "ig-1")
    listed = (await client.get("/v1/audit/overrides", headers=ig)).json()
    assert [o["override"]["actor"] for o in listed] == ["dsl-1"]
    view = (await client.get(f"/v1/households/{hh}/transparency", headers=parent)).json()
    (told,) = view["safeguarding_decisions"]
    assert "without your consent" in told["what"] and told["decided_by"] == "dsl-1"
    assert made.json()["override_id"] not in str(view) and hh not in str(view) and child not in str(view)
    assert_no_identifiers(view)

    risky = {**body, "tell_family": False, "risk_reason": "the family would be told of a section 47 enquiry"}
    assert (await client.post(url, json=risky, headers=dsl)).status_code == 201
    view = (await client.get(f"/v1/households/{hh}/transparency", headers=parent)).json()
    assert len(view["safeguarding_decisions"]) == 1  # the risky one is IG's alone
    assert len((await client.get("/v1/audit/overrides", headers=ig)).json()) == 2
