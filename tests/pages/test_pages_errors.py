"""What the pages say when they refuse or fail, over the real app (API and pages, as `hub up` serves them): the
catalogue's words for the problem's type in the reader's language, never the error's own text; the same answer,
byte for byte, for another family's record and for one that does not exist; and the API's and FHIR routes' errors
still answered by their own handlers (a problem document, an OperationOutcome) beside the pages."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest

from hub.demo.journey import ReportJourney, report_not_sent_journey
from hub.family import summary
from hub.family.enrolment import Enrolment
from hub.governance.auth import Principal, TokenService
from hub.ingest.services import Services
from hub.pages.problems import FIELDS, MESSAGES
from hub.pages.render import translations
from tests.pages.conftest import browser, csrf_of, project_logged, sign_in

pytestmark = pytest.mark.broker
COORDINATOR = Principal("cc-errors", "coordinator")
ELSEWHERE = Principal("cc-errors-elsewhere", "coordinator")
AGENCY = Principal("abuhb-paeds", "agency", agency="7A6")
OUTSIDER = Principal("bcuhb", "agency", agency="7A1")


async def families(services: Services) -> tuple[ReportJourney, ReportJourney]:
    """Two families on two coordinators' caseloads, projected."""
    now = datetime.now(UTC)
    out = []
    for n, who in ((1, COORDINATOR), (2, ELSEWHERE)):
        j = report_not_sent_journey(now, seed=900 + n, child_id=f"child-err-{n}", household_id=f"hh-err-{n}")
        await services.ingest.accept(j.before_consent + j.consent)
        Enrolment(services.store, None).assign(who.subject, j.household_id, by="admin")  # type: ignore[arg-type]
        out.append(j)
    await asyncio.to_thread(project_logged, services, 0, now)
    return out[0], out[1]


def said(text: str) -> str:
    return text.replace("&#39;", "'")


async def test_a_refusal_says_the_catalogues_words_never_the_errors_own(site_services: Services) -> None:
    async with browser(site_services) as client:
        await sign_in(client, site_services, Principal("p-err", "parent", household="hh-err-1"))
        r = await client.get("/caseload")
        assert r.status_code == 403 and MESSAGES["forbidden"] in r.text
        assert "may not use this route" not in r.text and "parent" not in r.text.split("<main", 1)[-1]
        welsh = await client.get("/caseload?lang=cy")
        assert welsh.status_code == 403
        assert said(translations("cy").gettext(MESSAGES["forbidden"])) in said(welsh.text)
        assert MESSAGES["forbidden"] not in welsh.text and "may not use this route" not in welsh.text
        forged = await client.post("/family/children/child-err-1/consents", data={"csrf": "forged"})
        assert forged.status_code == 403
        assert said(translations("cy").gettext(MESSAGES["form-expired"])) in said(forged.text)
        english = await client.post("/family/children/child-err-1/consents?lang=en", data={"csrf": "forged"})
        assert MESSAGES["form-expired"] in said(english.text)
        assert "the form has expired" not in english.text  # the error's own (lower-case) words


async def test_a_refused_form_names_its_fields_in_the_readers_language(site_services: Services) -> None:
    async with browser(site_services) as client:
        await sign_in(client, site_services, Principal("commissioner-err", "commissioner"))
        bad = await client.get("/kpis?start=yesterday")
        assert bad.status_code == 422 and MESSAGES["validation"] in bad.text and FIELDS["start"] in bad.text
        assert "give a date as" not in bad.text and "Period not understood" not in bad.text
        welsh = await client.get("/kpis?start=2026-05-01&end=2026-04-01&lang=cy")
        assert welsh.status_code == 422
        assert said(translations("cy").gettext(FIELDS["end"])) in said(welsh.text) and FIELDS["end"] not in welsh.text
        assert "the end must be after the start" not in welsh.text
    assert all(str(summary.MAX_CHARS) in FIELDS[f] for f in summary.FIELDS)  # the limit the summary keeps


async def test_another_familys_record_and_one_that_does_not_exist_answer_alike(site_services: Services) -> None:
    ours, theirs = await families(site_services)
    async with browser(site_services) as client:
        await sign_in(client, site_services, COORDINATOR)
        token = csrf_of((await client.get(f"/households/{ours.household_id}")).text)
        for lang in ("en", "cy"):
            await client.get(f"/?lang={lang}")
            pairs = [(await client.get(f"/households/{hh}"), await client.get(f"/households/{hh}/live"),
                      await client.post(f"/households/{hh}/alerts/a-1/acknowledge", data={"csrf": token}))
                     for hh in (theirs.household_id, "hh-err-nowhere")]
            for odd in ("a-1", "²", "١٢", "9" * 30):  # not an alert id: no such alert, never a failure
                ours_odd = await client.post(f"/households/{ours.household_id}/alerts/{odd}/acknowledge",
                                             data={"csrf": token})
                assert ours_odd.status_code == 404, (odd, ours_odd.status_code)
            for other, nowhere in zip(*pairs, strict=True):
                assert other.status_code == nowhere.status_code == 404
                assert other.content == nowhere.content and theirs.household_id not in other.text
    async with browser(site_services) as parent:
        await sign_in(parent, site_services, Principal("p-err-1", "parent", household=ours.household_id))
        token = csrf_of((await parent.get("/family")).text)
        form = {"csrf": token, "decision": "permit", "sectors": ["health"]}
        other = await parent.post(f"/family/children/{theirs.child_id}/consents", data=form)
        nowhere = await parent.post("/family/children/child-err-nowhere/consents", data=form)
        assert other.status_code == nowhere.status_code == 404 and other.content == nowhere.content
    async with browser(site_services) as outsider:
        await sign_in(outsider, site_services, OUTSIDER)
        other = await outsider.get(f"/inbox/children/{ours.child_id}/team")
        nowhere = await outsider.get("/inbox/children/child-err-nowhere/team")
        assert other.status_code == nowhere.status_code == 404 and other.content == nowhere.content
    async with browser(site_services) as agency:  # the child is in this agency's team: it is there
        await sign_in(agency, site_services, AGENCY)
        assert (await agency.get(f"/inbox/children/{ours.child_id}/team")).status_code == 200


def operation_outcome(r: httpx.Response) -> dict[str, str]:
    assert r.headers["content-type"].startswith("application/fhir+json"), (r.status_code, r.text)
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    return dict(body["issue"][0])


async def test_the_apis_errors_keep_their_own_form_beside_the_pages(site_services: Services) -> None:
    tokens = TokenService(site_services.settings)
    parent = {"Authorization": f"Bearer {tokens.create('p-err-api', 'parent', household='hh-err-1')}"}
    fhir = {"content-type": "application/fhir+json"}
    async with browser(site_services) as client:
        anonymous = await client.post("/fhir/Appointment", content=b"{}", headers=fhir)
        assert anonymous.status_code == 401 and operation_outcome(anonymous)["code"] == "login"
        assert anonymous.headers["www-authenticate"] == "Bearer"
        refused = await client.post("/fhir/Appointment", content=b"{}", headers={**fhir, **parent})
        assert refused.status_code == 403 and operation_outcome(refused)["code"] == "forbidden"
        for path, status in (("/v1/households/hh-err-1/timeline", 401), ("/v1/households/hh-err-2/timeline", 404)):
            r = await client.get(path, headers=parent if status == 404 else {})
            assert r.status_code == status and r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["status"] == status
        page = await client.get("/caseload")  # a page beside them still answers as a page
        assert page.status_code == 401 and page.headers["content-type"].startswith("text/html")
