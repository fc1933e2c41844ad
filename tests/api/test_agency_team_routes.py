"""The agency's minimum team view over the real app, broker and database.

A school, a health board and a local authority work with one child; the local authority also holds a
Child Protection allocation and the health board a CAMHS referral (restricted categories). Each
agency in the team sees who else is in it — services, agencies, named professionals — and nothing
clinical or restricted; an agency outside the team gets the same 404 as for a child that does not
exist; every read and refusal is audited, and the family's transparency view shows the reads.
"""

from __future__ import annotations

import httpx
import pytest

from hub.demo.identifiers import nhs_number, upn
from hub.governance.audit import AuditLog
from hub.ingest.services import Services
from hub.sharing.transparency import family_view
from tests.api.api_helpers import assert_no_identifiers
from tests.api.conftest import token_header
from tests.api.test_timeline_routes import SCHOOL, SLT, enrol_family, event, project_log

pytestmark = pytest.mark.broker
NHS, PUPIL = ("nhs-number", nhs_number(61)), ("upn", upn(61))
CWD = {"agency_id": "W06000022", "agency_name": "Newport City Council", "sector": "social_care",
       "service_name": "Children with Disabilities Team"}
CP = {"agency_id": "W06000022", "agency_name": "Newport City Council", "sector": "social_care",
      "service_name": "Child Protection"}
CAMHS = {"agency_id": "7A9", "sector": "health", "service_name": "CAMHS"}
SECRETS = ("Child Protection", "sw-cp-3", "Sioned Protection", "CAMHS", "camhs-7", "Confidential SLT findings",
           "Autism spectrum", "Dysphagia", "ReportIssued", "how", "since", "last_contact")


def family_events() -> list[dict[str, object]]:
    slt = {"id": "slt-12", "role": "Speech and language therapist", "display_name": "Ffion Rees"}
    return [
        event("ReferralMade", "ref-slt", -60, {"service": SLT, "reason": "Dysphagia"}, ident=NHS),
        event("AssessmentCompleted", "as-slt", -40, {"service": SLT, "professional": slt,
                                                     "assessment_kind": "communication"}, ident=NHS),
        event("ReportIssued", "rep-slt", -30, {"service": SLT, "author": slt, "report_id": "r-1",
                                               "report_kind": "speech_and_language_therapy",
                                               "title": "Confidential SLT findings"}, ident=NHS),
        event("DiagnosisRecorded", "dx-1", -29, {"service": SLT, "display": "Autism spectrum disorder"},
              ident=NHS),
        event("SchoolPlacement", "pl-1", -90, {"school": SCHOOL, "start_date": "2026-01-05"}, ident=PUPIL,
              sector="education"),
        event("AssessmentCompleted", "as-cwd", -20, {"service": CWD, "assessment_kind": "carers",
                                                     "professional": {"id": "sw-cwd-1", "role": "Social worker",
                                                                      "display_name": "Owain Price"}},
              ident=NHS, sector="social_care") | {"category": "social_care"},
        event("KeyProfessionalChanged", "kp-cp", -10, {"service": CP, "role": "allocated social worker",
                                                       "current": {"id": "sw-cp-3", "role": "Social worker",
                                                                   "display_name": "Sioned Protection"},
                                                       "effective_date": "2026-02-01"},
              ident=NHS, sector="social_care") | {"category": "child_protection"},
        event("ReferralMade", "ref-camhs", -5, {"service": CAMHS, "referrer": {"id": "camhs-7"}}, ident=NHS)
        | {"category": "mental_health"},
    ]


async def test_agencies_in_the_team_see_the_minimum_view_and_others_nothing(client: httpx.AsyncClient,
                                                                            services: Services) -> None:
    fam = await enrol_family(client, services, "cc-team-view")
    hh, child = fam["household"], fam["child"]
    r = await client.post("/v1/events", json=family_events())
    assert r.status_code == 200, r.text
    project_log(services)

    school = token_header(services, "agency", "senco-1", agency="S1")
    r = await client.get(f"/v1/agencies/S1/children/{child}/team", headers=school)
    assert r.status_code == 200, r.text
    view = r.json()
    assert view["child_id"] == child and hh not in r.text
    assert {(m["agency_id"], m["service"]) for m in view["team"]} == {
        ("7A6", "Speech and language therapy"), ("S1", "Maes Ebbw Special School"),
        ("W06000022", "Children with Disabilities Team")}
    slt = next(m for m in view["team"] if m["service"] == "Speech and language therapy")
    assert slt["professionals"] == {"slt-12": "Ffion Rees"} and slt["sector"] == "health"
    cwd = next(m for m in view["team"] if m["agency_id"] == "W06000022")
    assert cwd["agency_name"] == "Newport City Council" and cwd["professionals"] == {"sw-cwd-1": "Owain Price"}
    for secret in SECRETS:
        assert secret not in r.text, secret
    assert_no_identifiers(r.text)

    # the local authority is in the team too; its own restricted work is not listed back to anyone
    la = token_header(services, "agency", "la-user", agency="W06000022")
    la_view = (await client.get(f"/v1/agencies/W06000022/children/{child}/team", headers=la)).json()
    assert la_view["team"] == view["team"]
    # so is CAMHS, through restricted work only: it sees the team, and is listed in no one's view
    camhs = token_header(services, "agency", "camhs-user", agency="7A9")
    camhs_view = (await client.get(f"/v1/agencies/7A9/children/{child}/team", headers=camhs)).json()
    assert camhs_view["team"] == view["team"]

    # outside the team, another agency's path, and a child that does not exist: all the same 404
    stranger = token_header(services, "agency", "other-hb", agency="7A3")
    outside = await client.get(f"/v1/agencies/7A3/children/{child}/team", headers=stranger)
    missing = await client.get("/v1/agencies/7A3/children/c-0000000000000000/team", headers=stranger)
    assert outside.status_code == missing.status_code == 404 and outside.json() == missing.json()
    not_mine = await client.get(f"/v1/agencies/7A6/children/{child}/team", headers=school)
    assert not_mine.status_code == 404
    coordinator = token_header(services, "coordinator", "cc-team-view")
    assert (await client.get(f"/v1/agencies/S1/children/{child}/team", headers=coordinator)).status_code == 403

    # a read is visible to the family; a refusal is on the IG record
    seen = family_view(services.store, hh)["viewed"]
    assert [(e["who"], e["what"]) for e in seen if e["where"].startswith("the team around your child")] == [
        ("senco-1", "viewed"), ("la-user", "viewed"), ("camhs-user", "viewed")]
    denied = [r for r in AuditLog(services.store).records(actions=["login_denied"]) if r.actor == "other-hb"]
    assert {r.subject_child for r in denied} == {child, "c-0000000000000000"}
    assert AuditLog(services.store).verify().ok


async def test_an_agency_leaving_the_team_loses_the_view(client: httpx.AsyncClient, services: Services) -> None:
    fam = await enrol_family(client, services, "cc-team-leave")
    child = fam["child"]
    events = [event("ReferralMade", "ref-slt", -60, {"service": SLT}, ident=NHS),
              event("SchoolPlacement", "pl-1", -90, {"school": SCHOOL, "start_date": "2026-01-05"}, ident=PUPIL,
                    sector="education")]
    assert (await client.post("/v1/events", json=events)).status_code == 200
    project_log(services)
    health = token_header(services, "agency", "slt-user", agency="7A6")
    assert (await client.get(f"/v1/agencies/7A6/children/{child}/team", headers=health)).status_code == 200
    discharge = [event("ServiceDischarged", "dis-slt", -1, {"service": SLT}, ident=NHS)]
    assert (await client.post("/v1/events", json=discharge)).status_code == 200
    project_log(services)
    assert (await client.get(f"/v1/agencies/7A6/children/{child}/team", headers=health)).status_code == 404
    school = token_header(services, "agency", "senco-1", agency="S1")
    team = (await client.get(f"/v1/agencies/S1/children/{child}/team", headers=school)).json()["team"]
    assert [m["service"] for m in team] == ["Maes Ebbw Special School"]
