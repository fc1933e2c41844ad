"""The authorisation matrix: every route, every role, no token, a forged token and an expired one.

The expected answer for each cell comes from the policy table (hub/governance/auth.py POLICY): a role the route
does not admit gets 403; a missing, forged or expired token gets 401; public probes answer anyone. A
route missing from the table is refused to everyone, and this test fails until it is listed.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt
import pytest

from hub.api.app import create_app
from hub.governance.auth import POLICY, PUBLIC, ROLES, TokenService
from hub.ingest.services import Services
from tests.api.conftest import token_header

HOUSEHOLD = "hh-matrix"
CHILD = "c-matrix"


def concrete(path: str) -> str:
    return (path.replace("{household_id}", HOUSEHOLD).replace("{child_id}", CHILD)
            .replace("{member_id}", CHILD).replace("{coordinator_id}", "cc-matrix")
            .replace("{agency_id}", "7A6").replace("{resource_type}", "Appointment"))


def claims_for(role: str) -> dict[str, Any]:
    return {"agency": "7A6"} if role == "agency" else (
        {"household": HOUSEHOLD, "member": CHILD} if role in ("parent", "young_person") else {})


def routes(services: Services) -> list[tuple[str, str]]:
    """Every operation the app serves, from its OpenAPI document (which includes nested routers)."""
    paths = create_app(services).openapi()["paths"]
    return sorted((method.upper(), path) for path, ops in paths.items() for method in ops)


def test_every_route_has_a_policy(services: Services) -> None:
    missing = [r for r in routes(services) if r not in POLICY]
    assert missing == [], f"routes with no authorisation policy (refused to everyone): {missing}"


async def test_matrix_of_routes_and_roles(client: httpx.AsyncClient, services: Services) -> None:
    admin = token_header(services, "admin", "ops")
    r = await client.post("/v1/coordinators/cc-matrix/caseload", json={"household_id": HOUSEHOLD}, headers=admin)
    assert r.status_code == 204
    checked = 0
    for method, path in routes(services):
        rule = POLICY[(method, path)]
        url = concrete(path)
        if path.endswith("/stream"):
            continue  # endless responses: covered with a live server in test_timeline_routes
        anonymous = await client.request(method, url, headers={"Authorization": ""})
        if rule is PUBLIC:
            assert anonymous.status_code not in (401, 403), (method, path)
            continue
        assert anonymous.status_code == 401, (method, path, anonymous.status_code)
        assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
        for role in ROLES:
            subject = "cc-matrix" if role == "coordinator" else f"{role}-1"
            headers = token_header(services, role, subject, **claims_for(role))
            if role == "ig_officer" and rule.clinical and role in rule.roles:
                bare = await client.request(method, url, headers=headers)
                assert bare.status_code == 403 and "investigation reason" in bare.text, (method, path)
                headers["X-Investigation-Reason"] = "complaint 4411: missing SLT report"
            r = await client.request(method, url, headers=headers)
            if role in rule.roles:
                assert r.status_code not in (401, 403), (method, path, role, r.status_code, r.text)
            else:
                assert r.status_code == 403, (method, path, role, r.status_code)
            checked += 1
    assert checked > 100


@pytest.mark.parametrize("how", ["forged", "expired", "wrong-audience", "garbage", "unknown-role"])
async def test_bad_tokens_are_refused(client: httpx.AsyncClient, services: Services, how: str) -> None:
    now = int(time.time())
    good = {"sub": "cc-1", "role": "coordinator", "iss": "familyhub", "aud": "familyhub-api", "iat": now,
            "exp": now + 600}
    key = TokenService(services.settings).key
    token = {
        "forged": jwt.encode(good, b"not-the-hub-key-0123456789abcdef", algorithm="HS256"),
        "expired": jwt.encode(good | {"iat": now - 7200, "exp": now - 3600}, key, algorithm="HS256"),
        "wrong-audience": jwt.encode(good | {"aud": "someone-else"}, key, algorithm="HS256"),
        "garbage": "not.a.token",
        "unknown-role": jwt.encode(good | {"role": "superuser"}, key, algorithm="HS256"),
    }[how]
    r = await client.get("/v1/coordinators/cc-1/caseload", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401, r.text
    assert "cc-1" not in r.text or how != "forged"
    probe = await client.get("/healthz", headers={"Authorization": f"Bearer {token}"})
    assert probe.status_code == 200, probe.text  # health probes ignore tokens, good or bad


async def test_family_sees_its_own_household_and_the_young_person_only_their_own_record(
        client: httpx.AsyncClient, services: Services) -> None:
    cc = token_header(services, "coordinator", "cc-fam")
    hh = (await client.post("/v1/households", json={"coordinator_id": "cc-fam"}, headers=cc)).json()["household_id"]
    kids = [(await client.post(f"/v1/households/{hh}/members", headers=cc,
                               json={"kind": "child", "relationship": "child"})).json()["member_id"] for _ in range(2)]
    parent = token_header(services, "parent", "parent-1", household=hh)
    young = token_header(services, "young_person", "yp-1", household=hh, member=kids[0])
    stranger = token_header(services, "parent", "parent-2", household="hh-other")
    assert (await client.get(f"/v1/households/{hh}/appointments", headers=parent)).status_code == 200
    assert (await client.get(f"/v1/households/{hh}/members", headers=parent)).status_code == 200
    assert (await client.get(f"/v1/households/{hh}/appointments", headers=stranger)).status_code == 404
    assert (await client.get(f"/v1/households/{hh}/children/{kids[0]}/team", headers=young)).status_code == 200
    assert (await client.get(f"/v1/households/{hh}/children/{kids[1]}/team", headers=young)).status_code == 404
    assert (await client.get(f"/v1/households/{hh}/children/{kids[1]}/team", headers=parent)).status_code == 200
    assert (await client.get(f"/v1/households/{hh}/members", headers=young)).status_code == 403


async def test_reads_and_refusals_leave_an_audit_trace(client: httpx.AsyncClient, services: Services) -> None:
    from hub.governance.audit import AuditLog
    from hub.governance.audit_seal import open_detail

    cc = token_header(services, "coordinator", "cc-audit")
    hh = (await client.post("/v1/households", json={"coordinator_id": "cc-audit"}, headers=cc)).json()["household_id"]
    assert (await client.get(f"/v1/households/{hh}/timeline", headers=cc)).status_code == 200
    other = token_header(services, "coordinator", "cc-other")
    assert (await client.get(f"/v1/households/{hh}/timeline", headers=other)).status_code == 404
    ig = token_header(services, "ig_officer", "ig-1") | {"X-Investigation-Reason": "complaint ref 2026-0042 review"}
    assert (await client.get(f"/v1/households/{hh}/timeline", headers=ig)).status_code == 200
    records = AuditLog(services.store).records(household=hh)
    seen = [(r.action, r.actor, r.actor_role) for r in records]
    assert ("read_timeline", "cc-audit", "coordinator") in seen
    assert ("login_denied", "cc-other", "coordinator") in seen
    ig_read = next(r for r in records if r.actor == "ig-1")
    assert ig_read.action == "read_timeline" and ig_read.purpose == "investigation"
    # the reason is free text: sealed in the record, opened for IG (GET /v1/audit/records)
    assert "complaint" not in str(ig_read.detail["reason"])
    assert open_detail(services.vault, ig_read.detail)["reason"] == "complaint ref 2026-0042 review"
    assert AuditLog(services.store).verify().ok


async def test_the_agency_team_view_is_bound_to_the_tokens_agency_and_the_team(
        client: httpx.AsyncClient, services: Services) -> None:
    """In the matrix the agency gets 404 (it is in no child's team there); here: an agency asking
    through another agency's path, or for a child whose team it is not in, learns nothing more than
    for a child that does not exist (behaviour: test_agency_team_routes.py)."""
    route = ("GET", "/v1/agencies/{agency_id}/children/{child_id}/team")
    assert route in routes(services) and POLICY[route].roles == {"agency"}
    cc = token_header(services, "coordinator", "cc-team")
    hh = (await client.post("/v1/households", json={"coordinator_id": "cc-team"}, headers=cc)).json()["household_id"]
    child = (await client.post(f"/v1/households/{hh}/members", headers=cc,
                               json={"kind": "child", "relationship": "child"})).json()["member_id"]
    agency = token_header(services, "agency", "slt-1", agency="7A6")
    known = await client.get(f"/v1/agencies/7A6/children/{child}/team", headers=agency)
    unknown = await client.get("/v1/agencies/7A6/children/c-does-not-exist/team", headers=agency)
    assert known.status_code == unknown.status_code == 404 and known.json() == unknown.json()
    assert (await client.get(f"/v1/agencies/S1/children/{child}/team", headers=agency)).status_code == 404
