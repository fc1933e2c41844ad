"""A wrong identifier link can be put right, and only by someone who may: SQLite and PostgreSQL, through the API.

A coordinator of another caseload who links a child's NHS number already linked in another household is
refused (409, naming the rule, never the identifier) and nothing moves; a coordinator of both households
moves it, audited in the link's own transaction, and both households' coordinators are alerted. A
coordinator creates households on their own caseload only.
"""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy as sa

from hub.db.schema import identity_links, ingest_log
from hub.demo.identifiers import nhs_number
from hub.governance.audit import AuditLog
from hub.ingest.services import Services
from hub.sharing.alerts import list_alerts
from tests.api.conftest import token_header
from tests.api.test_timeline_routes import project_log

pytestmark = pytest.mark.broker
NHS = nhs_number(73)


async def household_with_child(client: httpx.AsyncClient, services: Services, coordinator: str) -> tuple[str, str]:
    cc = token_header(services, "coordinator", coordinator)
    r = await client.post("/v1/households", json={"coordinator_id": coordinator}, headers=cc)
    assert r.status_code == 201, r.text
    hh = r.json()["household_id"]
    r = await client.post(f"/v1/households/{hh}/members", headers=cc, json={"kind": "child", "relationship": "child"})
    return hh, r.json()["member_id"]


async def link(client: httpx.AsyncClient, services: Services, role: str, subject: str, hh: str,
               child: str) -> httpx.Response:
    return await client.post(f"/v1/households/{hh}/members/{child}/identifiers",
                             headers=token_header(services, role, subject),
                             json={"system": "nhs-number", "value": NHS, "reason": "matched on the referral"})


def linked_to(services: Services) -> tuple[str, str] | None:
    L = identity_links.c
    with services.store.engine.connect() as conn:
        row = conn.execute(sa.select(L.household_id, L.child_id).where(L.active.is_(True))).first()
    return (row.household_id, row.child_id) if row else None


def link_events(services: Services) -> int:
    with services.store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(ingest_log)).scalar() or 0)


async def test_a_coordinator_of_another_caseload_cannot_take_a_linked_child(
        client: httpx.AsyncClient, services: Services) -> None:
    home = await household_with_child(client, services, "cc-home")
    assert (await link(client, services, "coordinator", "cc-home", *home)).status_code == 202
    project_log(services)
    other = await household_with_child(client, services, "cc-other")
    before = link_events(services)

    r = await link(client, services, "coordinator", "cc-other", *other)

    assert r.status_code == 409, r.text
    assert "only a coordinator of both households" in r.text and NHS not in r.text
    assert link_events(services) == before  # nothing accepted
    project_log(services)
    assert linked_to(services) == home  # nothing moved
    assert not [r for r in AuditLog(services.store).records(actions=["identity_move"])]


async def test_a_coordinator_of_both_households_moves_it_audited_and_both_are_alerted(
        client: httpx.AsyncClient, services: Services) -> None:
    first = await household_with_child(client, services, "cc-both")
    assert (await link(client, services, "coordinator", "cc-both", *first)).status_code == 202
    project_log(services)
    second = await household_with_child(client, services, "cc-both")

    r = await link(client, services, "coordinator", "cc-both", *second)

    assert r.status_code == 202, r.text
    project_log(services)
    assert linked_to(services) == second
    (move,) = AuditLog(services.store).records(actions=["identity_move"])
    assert move.actor == "cc-both" and move.subject_household == second[0]
    assert move.detail["from_household"] == first[0] and move.detail["from_child"] == first[1]
    for hh, child in (first, second):
        (alert,) = list_alerts(services.store, household_id=hh, kind="identity_moved")
        assert alert["child_id"] == child and NHS not in alert["message"] and NHS not in str(alert["details"])


async def test_an_ig_officer_may_move_a_link_between_caseloads(client: httpx.AsyncClient, services: Services) -> None:
    first = await household_with_child(client, services, "cc-one")
    assert (await link(client, services, "coordinator", "cc-one", *first)).status_code == 202
    project_log(services)
    second = await household_with_child(client, services, "cc-two")
    assert (await link(client, services, "coordinator", "cc-two", *second)).status_code == 409

    r = await link(client, services, "ig_officer", "ig-1", *second)

    assert r.status_code == 202, r.text
    project_log(services)
    assert linked_to(services) == second
    assert {a["household_id"] for a in list_alerts(services.store, kind="identity_moved")} == {first[0], second[0]}


async def test_a_coordinator_cannot_create_a_household_on_another_caseload(
        client: httpx.AsyncClient, services: Services) -> None:
    r = await client.post("/v1/households", json={"coordinator_id": "cc-someone-else"},
                          headers=token_header(services, "coordinator", "cc-me"))
    assert r.status_code == 403, r.text
    with services.store.engine.connect() as conn:
        assert not conn.execute(sa.text("select count(*) from households")).scalar()
    r = await client.post("/v1/households", json={"coordinator_id": "cc-someone-else"},
                          headers=token_header(services, "admin", "admin-1"))
    assert r.status_code == 201, r.text
