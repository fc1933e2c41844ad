"""The summary routes over the real app, broker and database (SQLite and PostgreSQL): the family writes the
"tell it once" summary; the coordinator and an agency in the child's team read it only while it is shared;
a sibling, another household, another caseload's coordinator, an agency outside the team and a caller with
no token are refused, and a refused write changes nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest

from hub.demo.journey import report_not_sent_journey
from hub.family.enrolment import Enrolment
from hub.governance.audit import AuditLog
from hub.ingest.services import Services
from tests.api.conftest import token_header
from tests.pages.conftest import project_logged

pytestmark = pytest.mark.broker
HH, CHILD = "hh-sum-api", "child-sum-api"
URL = f"/v1/households/{HH}/children/{CHILD}/summary"
TEXT = {"needs": "Epilepsy: rescue medicine in the red bag", "communication": "Speaks in short phrases",
        "involved": "Paediatrics, school nurse, short-breaks team"}


async def test_the_family_writes_it_and_only_those_it_is_shared_with_read_it(services: Services,
                                                                             client: httpx.AsyncClient) -> None:
    j = report_not_sent_journey(datetime.now(UTC), seed=812, child_id=CHILD, household_id=HH)
    await services.ingest.accept(j.before_consent)
    Enrolment(services.store, None).assign("cc-sum", HH, by="admin")  # type: ignore[arg-type]
    await asyncio.to_thread(project_logged, services, 0, datetime.now(UTC))
    parent = token_header(services, "parent", "parent-sum", household=HH)
    coordinator = token_header(services, "coordinator", "cc-sum")

    first = await client.put(URL, json={**TEXT, "shared": False}, headers=parent)
    assert first.status_code == 200 and first.json()["status"] == "written"
    assert (await client.get(URL, headers=parent)).json()["needs"] == TEXT["needs"]
    hidden = await client.get(URL, headers=coordinator)  # not shared: as if there were none
    assert hidden.status_code == 404 and "Epilepsy" not in hidden.text
    team = f"/v1/agencies/7A6/children/{CHILD}/summary"
    assert (await client.get(team, headers=token_header(services, "agency", "abuhb", agency="7A6"))).status_code == 404

    shared = await client.put(URL, json={**TEXT, "shared": True}, headers=parent)
    assert shared.json() == {"child_id": CHILD, "shared": True, "status": "changed", "changed": [],
                             "sharing_changed": True}
    assert (await client.get(URL, headers=coordinator)).json()["communication"] == TEXT["communication"]
    in_team = await client.get(team, headers=token_header(services, "agency", "abuhb", agency="7A6"))
    assert in_team.status_code == 200 and in_team.json()["involved"] == TEXT["involved"]

    refusals = [
        (f"/v1/agencies/7A1/children/{CHILD}/summary", token_header(services, "agency", "bcuhb", agency="7A1"), 404),
        (team, token_header(services, "agency", "bcuhb", agency="7A1"), 404),  # another agency's path
        (URL, token_header(services, "coordinator", "cc-elsewhere"), 404),
        (URL, token_header(services, "parent", "parent-x", household="hh-elsewhere"), 404),
        (URL, token_header(services, "young_person", "yp-sib", household=HH, member="child-sum-sibling"), 404),
        (URL, {"Authorization": ""}, 401),
    ]
    for url, headers, status in refusals:
        r = await client.get(url, headers=headers)
        assert r.status_code == status and "Epilepsy" not in r.text, (url, r.text)
    for headers, status in [(token_header(services, "coordinator", "cc-sum"), 403),
                            (token_header(services, "young_person", "yp-sib", household=HH,
                                          member="child-sum-sibling"), 404),
                            (token_header(services, "parent", "parent-x", household="hh-elsewhere"), 404)]:
        r = await client.put(URL, json={"needs": "overwritten", "shared": False}, headers=headers)
        assert r.status_code == status
    too_long = await client.put(URL, json={"needs": "z" * 2001, "shared": False}, headers=parent)
    assert too_long.status_code == 422 and "needs" in too_long.text and "zzzz" not in too_long.text
    empty = await client.put(URL, json={"shared": False}, headers=parent)
    assert empty.status_code == 422 and "write at least one part of the summary" in empty.text
    kept = (await client.get(URL, headers=parent)).json()
    assert kept["needs"] == TEXT["needs"] and kept["shared"] is True  # nothing lost
    changes = AuditLog(services.store).records(household=HH, actions=["summary_change"])
    assert [(r.detail or {}).get("shared") for r in changes] == [False, True]

    # the young person writes their own (here: takes it back to the family alone)
    me = token_header(services, "young_person", "yp-self", household=HH, member=CHILD)
    own = await client.put(URL, json={**TEXT, "communication": "I prefer text messages", "shared": False}, headers=me)
    assert own.status_code == 200 and own.json()["changed"] == ["communication"]
    assert (await client.get(URL, headers=me)).json()["written_by_role"] == "young_person"
    assert (await client.get(URL, headers=coordinator)).status_code == 404  # no longer shared
    # now it is the young person's: their parent reads it but cannot change it
    assert (await client.get(URL, headers=parent)).json()["communication"] == "I prefer text messages"
    refused = await client.put(URL, json={**TEXT, "shared": True}, headers=parent)
    assert refused.status_code == 403 and "only they can change it" in refused.text
    assert (await client.get(URL, headers=me)).json()["shared"] is False
