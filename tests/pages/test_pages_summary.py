"""Tell it once: a parent writes a summary of their child on their own page and chooses to share it; the
coordinator's family page and an agency in the child's team see it only once it is shared; a sibling, another
household's parent, another caseload's coordinator, an agency outside the team and nobody signed in never do.
The text is sealed at rest, each change is audited, and erasing the child removes it and shreds its key."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from hub.db.schema import child_summaries, subject_keys
from hub.demo.journey import ReportJourney, report_not_sent_journey
from hub.family.enrolment import Enrolment
from hub.family.summary import key_subject
from hub.governance.audit import AuditLog
from hub.governance.auth import Principal
from hub.governance.erasure import Erasure, MemberRef
from hub.ingest.services import Services
from tests.pages.conftest import browser, csrf_of, project_logged, sign_in

pytestmark = pytest.mark.broker
COORDINATOR = Principal("cc-summary", "coordinator")
NEEDS = "Uses a wheelchair; tube fed at noon; loud rooms upset her"
TALK = "Makaton signs and a picture board; give her time to answer"


async def family(services: Services) -> ReportJourney:
    j = report_not_sent_journey(datetime.now(UTC), seed=811, child_id="child-tio-1", household_id="hh-tio")
    await services.ingest.accept(j.before_consent + j.consent)
    Enrolment(services.store, None).assign(COORDINATOR.subject, j.household_id, by="admin")  # type: ignore[arg-type]
    await asyncio.to_thread(project_logged, services, 0, datetime.now(UTC))
    return j


def parent_of(j: ReportJourney) -> Principal:
    return Principal(f"parent-{j.household_id}", "parent", household=j.household_id)


async def write(services: Services, who: Principal, child_id: str, shared: str, **parts: str) -> int:
    async with browser(services) as client:
        await sign_in(client, services, who)
        start = await client.get("/")  # any page carries the session's form token
        r = await client.post(f"/family/children/{child_id}/summary",
                              data={"csrf": csrf_of(start.text), "shared": shared, **parts})
        return r.status_code


def stored(services: Services, child_id: str) -> dict[str, object] | None:
    with services.store.engine.connect() as conn:
        row = conn.execute(sa.select(child_summaries).where(child_summaries.c.child_id == child_id)).first()
    return dict(row._mapping) if row is not None else None


async def test_a_parent_tells_it_once_and_only_those_they_share_it_with_see_it(site_services: Services) -> None:
    svc = site_services
    j = await family(svc)
    child = j.child_id
    assert await write(svc, parent_of(j), child, "no", needs=NEEDS, communication=TALK) == 303
    row = stored(svc, child)
    assert row is not None and row["shared"] is False
    assert "wheelchair" not in str(row["sealed"]) and "Makaton" not in str(row["sealed"])  # sealed at rest
    async with browser(svc) as parent:
        await sign_in(parent, svc, parent_of(j))
        own = (await parent.get("/family")).text
        assert "Uses a wheelchair" in own and "Not shared: only your family sees it" in own

    async with browser(svc) as coordinator:  # not shared: the coordinator's family page does not show it
        await sign_in(coordinator, svc, COORDINATOR)
        page = (await coordinator.get(f"/households/{j.household_id}")).text
        assert "wheelchair" not in page and "The family has not shared a summary." in page
    async with browser(svc) as agency:
        await sign_in(agency, svc, Principal("abuhb-paeds", "agency", agency="7A6"))
        page = await agency.get(f"/inbox/children/{child}/team")
        assert page.status_code == 200 and "wheelchair" not in page.text

    assert await write(svc, parent_of(j), child, "yes", needs=NEEDS, communication=TALK) == 303
    async with browser(svc) as coordinator:
        await sign_in(coordinator, svc, COORDINATOR)
        page = (await coordinator.get(f"/households/{j.household_id}")).text
        assert "Uses a wheelchair" in page and "Makaton signs" in page
    async with browser(svc) as agency:  # an agency in the team around the child
        await sign_in(agency, svc, Principal("abuhb-paeds", "agency", agency="7A6"))
        assert "Makaton signs" in (await agency.get(f"/inbox/children/{child}/team")).text
    async with browser(svc) as outsider:  # an agency outside the team: as if the child did not exist
        await sign_in(outsider, svc, Principal("bcuhb", "agency", agency="7A1"))
        r = await outsider.get(f"/inbox/children/{child}/team")
        assert r.status_code == 404 and "Makaton" not in r.text
    async with browser(svc) as other:  # another caseload's coordinator
        await sign_in(other, svc, Principal("cc-elsewhere", "coordinator"))
        r = await other.get(f"/households/{j.household_id}")
        assert r.status_code == 404 and "Makaton" not in r.text

    records = AuditLog(svc.store).records(household=j.household_id, actions=["summary_change"])
    assert [(r.detail or {}).get("shared") for r in records] == [False, True]
    assert [(r.detail or {}).get("sharing_changed") for r in records] == [True, True]
    assert all("wheelchair" not in str(r.detail) and r.actor == parent_of(j).subject for r in records)


async def test_those_who_may_not_write_are_refused_and_nothing_is_lost(site_services: Services) -> None:
    svc = site_services
    j = await family(svc)
    child = j.child_id
    assert await write(svc, parent_of(j), child, "yes", needs=NEEDS) == 303
    before = stored(svc, child)
    # a parent of another household, a sibling (a young person of the same household), a coordinator
    other_parent = Principal("parent-x", "parent", household="hh-elsewhere")
    sibling = Principal("yp-sibling", "young_person", household=j.household_id, member="child-tio-2")
    assert await write(svc, other_parent, child, "yes", needs="overwritten") == 404
    assert await write(svc, sibling, child, "no", needs="overwritten") == 404
    assert await write(svc, COORDINATOR, child, "no", needs="overwritten") == 403
    async with browser(svc) as nobody:  # no session: the page asks them to sign in; a post is refused
        assert (await nobody.get("/family")).status_code == 401
        r = await nobody.post(f"/family/children/{child}/summary", data={"shared": "no", "needs": "overwritten"})
        assert r.status_code in (401, 403)
    async with browser(svc) as parent:
        await sign_in(parent, svc, parent_of(j))
        own = await parent.get("/family")
        too_long = await parent.post(f"/family/children/{child}/summary",
                                     data={"csrf": csrf_of(own.text), "shared": "no", "needs": "x" * 2001})
        unchosen = await parent.post(f"/family/children/{child}/summary",
                                          data={"csrf": csrf_of(own.text), "needs": "changed"})
        no_token = await parent.post(f"/family/children/{child}/summary", data={"shared": "no", "needs": "changed"})
    assert too_long.status_code == 422 and "in at most 2000 characters" in too_long.text and "xxxx" not in too_long.text
    assert unchosen.status_code == 422 and "Choose whether to share the summary" in unchosen.text
    assert no_token.status_code == 403
    assert stored(svc, child) == before  # nothing lost, nothing changed


async def test_erasing_the_child_removes_the_summary_and_shreds_its_key(site_services: Services) -> None:
    svc = site_services
    j = await family(svc)
    assert await write(svc, parent_of(j), j.child_id, "yes", needs=NEEDS) == 303
    result = await asyncio.to_thread(Erasure(svc.store, svc.vault, svc.pseudonymise).erase,
                                     MemberRef(j.household_id, j.child_id), reason="SAR/ERASE-77", actor="ig-1")
    assert key_subject(j.child_id) in result.subjects and result.removed.get("child_summaries") == 1
    assert stored(svc, j.child_id) is None
    with svc.store.engine.connect() as conn:
        keys = conn.execute(sa.select(subject_keys.c.wrapped_key).where(
            subject_keys.c.subject == key_subject(j.child_id))).all()
    assert keys and all(k.wrapped_key is None for k in keys)


async def test_a_young_person_tells_their_own_and_it_stays_theirs(site_services: Services) -> None:
    svc = site_services
    j = await family(svc)
    me = Principal("yp-tio", "young_person", household=j.household_id, member=j.child_id)
    assert await write(svc, me, j.child_id, "no", needs="I use a communication app", involved="My key worker") == 303
    async with browser(svc) as parent:
        await sign_in(parent, svc, parent_of(j))
        own = (await parent.get("/family")).text
        assert "I use a communication app" in own and "Save your summary" not in own  # theirs to change
    assert await write(svc, parent_of(j), j.child_id, "yes", needs="overwritten") == 403
    async with browser(svc) as young:
        await sign_in(young, svc, me)
        assert "Save your summary" in (await young.get("/family")).text
    row = stored(svc, j.child_id)
    assert row is not None and row["written_role"] == "young_person" and row["shared"] is False
