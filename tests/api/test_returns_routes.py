"""The SEN2 return over HTTP: for IG officers and admins only, checked before it is answered, audited."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from hub.db.schema import audit_log
from hub.governance.sen2 import check
from hub.ingest.services import Services
from hub.stream import projection
from tests.api.conftest import token_header
from tests.governance.test_sen2_return import ENGLAND, LEA, NEWPORT, NOW, SEN2_CHILD, link, sen2_events
from tests.sharing.sharing_support import Feeder

URL = f"/v1/agencies/{ENGLAND}/returns/sen2?year=2026&lea={LEA}"
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def seed(services: Services) -> None:
    from hub.core.events import SubjectRef

    feeder = Feeder(services.store, NOW)
    events = [*sen2_events(ENGLAND, SEN2_CHILD), *sen2_events(NEWPORT, SEN2_CHILD),
              link("child-newport-9", "household-newport-9", SubjectRef("upn", SEN2_CHILD))]
    projection.apply(services.store, feeder.decode(events))


def exports(services: Services) -> list[str]:
    with services.store.engine.connect() as conn:
        return [r.actor for r in conn.execute(sa.select(audit_log.c.actor).where(audit_log.c.action == "export"))]


async def test_an_ig_officer_gets_the_checked_return_and_the_call_is_audited(client: httpx.AsyncClient,
                                                                            services: Services) -> None:
    seed(services)
    r = await client.get(URL, headers=token_header(services, "ig_officer", "ig-1"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/xml")
    assert f'filename="sen2-2026-{ENGLAND}.xml"' in r.headers["content-disposition"]
    assert check(r.content).problems == [] and b"<CeaseReason>5</CeaseReason>" in r.content
    assert b"<LEA>201</LEA>" in r.content
    assert SEN2_CHILD.encode() not in r.content
    assert exports(services) == ["ig-1"]


async def test_the_return_is_refused_to_everyone_else(client: httpx.AsyncClient, services: Services) -> None:
    seed(services)
    callers = {
        "the authority's own agency system": token_header(services, "agency", "newport-send", agency=NEWPORT),
        "a coordinator": token_header(services, "coordinator", "cc-1"),
        "the child's parent": token_header(services, "parent", "parent-9", household="household-newport-9"),
    }
    for who, headers in callers.items():
        r = await client.get(URL, headers=headers)
        assert r.status_code == 403, (who, r.text)
        assert b"ReceivedDate" not in r.content
    anonymous = await client.get(URL, headers={"Authorization": ""})
    assert anonymous.status_code == 401
    assert exports(services) == []


async def test_a_welsh_authority_or_a_bad_lea_is_a_problem_not_a_file_and_no_export(
        client: httpx.AsyncClient, services: Services) -> None:
    seed(services)
    admin = token_header(services, "admin", "admin-1")
    r = await client.get(f"/v1/agencies/{NEWPORT}/returns/sen2?year=2026&lea=680", headers=admin)
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert "LEA 680: agency W06000022 is an authority in Wales" in r.text and "England" in r.text
    for lea, said in (("W06000022", "LEA 'W06000022': give the authority's 3-digit DfE local-authority number"),
                      ("999", "LEA 999 is not the DfE number of a local authority in England")):
        r = await client.get(f"/v1/agencies/{ENGLAND}/returns/sen2?year=2026&lea={lea}", headers=admin)
        assert r.status_code == 422 and said in r.text, r.text
    no_lea = await client.get(f"/v1/agencies/{ENGLAND}/returns/sen2?year=2026", headers=admin)
    assert no_lea.status_code == 422 and "no LEA" in no_lea.text
    bad_year = await client.get(f"/v1/agencies/{ENGLAND}/returns/sen2?year=26&lea={LEA}", headers=admin)
    assert bad_year.status_code == 422
    assert exports(services) == []  # nothing was exported, so nothing is audited as an export


CIN_URL = f"/v1/agencies/{ENGLAND}/returns/cin?year=2026&lea={LEA}"


@pytest.fixture
async def cin_client(services: Services, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The app with an agency registry: the council's social-care system, another council's, a health board."""
    from hub.api.app import create_app
    from hub.core.events import SubjectRef
    from tests.governance.test_cin_return import LA_PERSON, cin_events

    agencies = [{"id": ENGLAND, "name": "City of London", "sectors": ["social_care", "education"],
                 "source_systems": ["col-lcs"]},
                {"id": NEWPORT, "name": "Newport City Council", "sectors": ["social_care", "education"],
                 "source_systems": ["newport-lcs"]},
                {"id": "E08000025", "name": "Birmingham", "sectors": ["social_care"], "source_systems": ["bham-lcs"]},
                {"id": "7A6", "name": "Aneurin Bevan UHB", "sectors": ["health"], "source_systems": ["abuhb-pas"]}]
    path = tmp_path / "agencies.json"
    path.write_text(json.dumps({"agencies": agencies}))
    services.settings.agencies_file = path
    feeder = Feeder(services.store, NOW)
    projection.apply(services.store, feeder.decode([
        *cin_events(ENGLAND, LA_PERSON), *cin_events(NEWPORT, LA_PERSON),
        link("child-newport-9", "household-newport-9", SubjectRef("la-person-id", LA_PERSON))]))
    app = create_app(services)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as c:
        yield c


async def test_the_council_and_ig_get_the_checked_cin_return_and_each_call_is_audited(
        cin_client: httpx.AsyncClient, services: Services) -> None:
    from hub.governance.cin import check as check_cin

    council = token_header(services, "agency", "col-lcs", agency=ENGLAND)
    for headers in (council, token_header(services, "ig_officer", "ig-1")):
        r = await cin_client.get(CIN_URL, headers=headers)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/xml")
        assert f'filename="cin-2026-{ENGLAND}.xml"' in r.headers["content-disposition"]
        assert check_cin(r.content).problems == [] and b"<ReferralSource>3A</ReferralSource>" in r.content
        assert b"LA-200431" not in r.content
    assert exports(services) == ["col-lcs", "ig-1"]


async def test_a_cin_return_answered_422_is_not_audited_as_an_export(
        cin_client: httpx.AsyncClient, services: Services) -> None:
    welsh = token_header(services, "agency", "newport-lcs", agency=NEWPORT)
    r = await cin_client.get(f"/v1/agencies/{NEWPORT}/returns/cin?year=2026&lea=680", headers=welsh)
    assert r.status_code == 422 and "an authority in Wales" in r.text, r.text
    bad_lea = await cin_client.get(f"/v1/agencies/{ENGLAND}/returns/cin?year=2026&lea=20",
                                   headers=token_header(services, "ig_officer", "ig-1"))
    assert bad_lea.status_code == 422 and "LEA '20'" in bad_lea.text
    assert exports(services) == []  # a refused return exported nothing
    ok = await cin_client.get(CIN_URL, headers=token_header(services, "ig_officer", "ig-2"))
    assert ok.status_code == 200 and exports(services) == ["ig-2"]


async def test_the_cin_return_is_refused_to_another_council_a_health_board_and_no_token(
        cin_client: httpx.AsyncClient, services: Services) -> None:
    london = token_header(services, "agency", "bham-lcs", agency="E08000025")
    health = token_header(services, "agency", "abuhb-pas", agency="7A6")
    r = await cin_client.get(CIN_URL, headers=london)
    assert r.status_code == 404 and b"CINreferralDate" not in r.content  # another council: no such agency
    r = await cin_client.get(CIN_URL, headers=health)
    assert r.status_code == 404 and b"CINreferralDate" not in r.content
    own = await cin_client.get("/v1/agencies/7A6/returns/cin?year=2026", headers=health)
    assert own.status_code == 403, own.text  # a health board makes no CIN return, even of its own id
    assert "not registered for the social-care sector" in own.json()["detail"]
    for who, headers in {"a coordinator": token_header(services, "coordinator", "cc-1"),
                         "an admin": token_header(services, "admin", "admin-1"),
                         "the child's parent": token_header(services, "parent", "p-9",
                                                            household="household-newport-9")}.items():
        r = await cin_client.get(CIN_URL, headers=headers)
        assert r.status_code in (403, 404), (who, r.text)
        assert b"CINreferralDate" not in r.content
    anonymous = await cin_client.get(CIN_URL)
    assert anonymous.status_code == 401
    assert exports(services) == []
