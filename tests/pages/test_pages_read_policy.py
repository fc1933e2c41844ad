"""The pages show exactly what the read policy lets each reader see, and refuse whom the API refuses.

The household of the read-policy matrix (tests/api/test_read_policy_matrix.py): a parent, an 18-year-old who
refuses her parents her clinical record, her 7-year-old brother whose record the parents share with care
coordination, entries of every kind the policy distinguishes. Each reader signs in and opens the pages;
every entry on a page is one the policy shows or redacts for them, never one it hides, and a redacted one
never carries its details (SQLite and PostgreSQL; the refusals on SQLite).
"""

from __future__ import annotations

import asyncio
import re

import pytest

from consent.reading import Visibility
from hub.family.enrolment import Enrolment
from hub.governance.audit import AuditLog
from hub.governance.auth import Principal
from hub.ingest.services import Services
from tests.api.test_read_policy_matrix import World, build, expected, readers, stored_entries, subject_of
from tests.pages.conftest import browser, sign_in

pytestmark = pytest.mark.broker
EVENT = re.compile(r'data-event="([^"]+)"')
SECRETS = ("a diagnosis not yet told",)


def principal_of(who: object, w: World) -> Principal:
    role, claims = who.role, who.claims  # type: ignore[attr-defined]
    return Principal(subject_of(who), role, claims.get("agency"), claims.get("household"),  # type: ignore[arg-type]
                     claims.get("member"))


@pytest.fixture
async def world(both_databases: Services) -> World:
    w = await asyncio.to_thread(build, both_databases)
    Enrolment(both_databases.store, None).assign("cc-away", w.other_household, by="admin")  # type: ignore[arg-type]
    return w


def check_page(html: str, want: dict[str, tuple[Visibility, str]], everything: set[str]) -> set[str]:
    shown = set(EVENT.findall(html))
    assert shown <= everything
    hidden = {e for e in shown if want[e][0] is Visibility.HIDDEN}
    assert not hidden, "an entry the read policy hides is on the page"
    for secret in SECRETS:
        assert secret not in html
    return shown


async def test_each_reader_sees_on_the_pages_only_what_the_read_policy_shows(both_databases: Services,
                                                                              world: World) -> None:
    rows = stored_entries(both_databases, world.household)
    everything = {r["event_id"] for r in rows}
    by_name = {who.name: who for who in readers(world)}
    for name, path in (("coordinator", f"/households/{world.household}"), ("parent", "/family"),
                       ("young person", "/family")):
        who = by_name[name]
        want = expected(world, who, rows)
        async with browser(both_databases) as client:
            await sign_in(client, both_databases, principal_of(who, world))
            r = await client.get(path)
            assert r.status_code == 200, (name, r.text[:300])
            shown = check_page(r.text, want, everything)
            visible = {e for e, (v, _) in want.items() if v is not Visibility.HIDDEN}
            assert shown == visible, name  # and nothing the policy shows is missing
    # the coordinator's read was audited against the API route the page drew it from
    reads = AuditLog(both_databases.store).records(household=world.household, actions=["read_timeline"])
    assert any("(page /households/{household_id})" in (r.data_ref or "") for r in reads)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_pages_refuse_whom_the_api_refuses(both_databases: Services, world: World) -> None:
    by_name = {who.name: who for who in readers(world)}
    cases = [
        ("another coordinator", f"/households/{world.household}", 404),  # not on their caseload
        ("other household's parent", f"/households/{world.household}", 403),  # a parent, by URL
        ("parent", f"/households/{world.household}", 403),
        ("young person", "/caseload", 403),
        ("agency outside the team", "/family", 403),
        ("agency outside the team", f"/households/{world.household}", 403),
        ("IG with a reason", f"/households/{world.household}", 403),
        ("other household's parent", f"/households/{world.household}/live", 404),  # the live feed too
        ("another coordinator", f"/households/{world.household}/live", 404),
        ("agency outside the team", f"/households/{world.household}/live", 403),
    ]
    for name, path, status in cases:
        async with browser(both_databases) as client:
            await sign_in(client, both_databases, principal_of(by_name[name], world))
            r = await client.get(path)
            assert r.status_code == status, (name, path, r.status_code)
            assert not EVENT.search(r.text) and world.household not in r.text.replace(path, "")
    # the other household's parent sees their own (empty) household, nothing of this one
    async with browser(both_databases) as client:
        await sign_in(client, both_databases, principal_of(by_name["other household's parent"], world))
        r = await client.get("/family")
        assert r.status_code == 200 and not EVENT.search(r.text)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_sibling_cannot_change_her_brothers_consents(both_databases: Services, world: World) -> None:
    who = next(w for w in readers(world) if w.name == "young person")
    async with browser(both_databases) as client:
        await sign_in(client, both_databases, principal_of(who, world))
        page = await client.get("/family")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        assert f"/family/children/{world.sibling}/consents" not in page.text
        r = await client.post(f"/family/children/{world.sibling}/consents",
                              data={"csrf": token, "decision": "permit", "sectors": "health"})
        assert r.status_code == 404
