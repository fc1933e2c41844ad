"""A multi-agency referral through `hub up` over HTTP, as the people who must be refused try it: no token,
another household's coordinator, an agency, a parent of the household and the young person are refused; a
hostile body is refused naming its field and never saying the identifier back; a retry with the same
Idempotency-Key answers the first referral and the same key with another body is refused. Afterwards the
household holds exactly the one referral its coordinator made."""

from __future__ import annotations

from typing import Any

from tests.scenarios.running import RunningHub, door
from tests.support import bearer

CARE = {"agency_id": "W06000022", "sector": "social_care", "service_name": "Complex needs care coordination"}
SLT = {"agency_id": "7A6", "sector": "health", "service_name": "Speech and language therapy, Serennu"}
PHYSIO = {"agency_id": "7A6", "sector": "health", "service_name": "Physiotherapy, Serennu"}
BODY = {"referrer_service": CARE, "services": [SLT, PHYSIO], "reason": "feeding and development",
        "priority": "routine"}


def test_a_referral_is_made_by_its_coordinator_alone_and_a_hostile_or_changed_one_records_nothing(
        hub: RunningHub) -> None:
    d = door(hub, "ref", 880_000)
    tag, nhs, coordinator, household, child = d.tag, d.nhs, d.coordinator, d.household, d.child
    path = f"/v1/households/{household}/children/{child}/referrals"

    def referrals() -> list[dict[str, Any]]:
        r = hub.call("GET", f"/v1/households/{household}/referrals", coordinator.auth)
        assert r.status_code == 200, r.text
        return list(r.json()["referrals"])

    refused = {
        "nobody": ({}, 401),
        "another caseload's coordinator": (bearer("coordinator", d.other), 404),
        "an agency": (bearer("agency", f"abuhb-{tag}", agency="7A6"), 403),
        "a parent of the household": (bearer("parent", f"p-{tag}", household=household), 403),
        "the young person": (bearer("young_person", f"yp-{tag}", household=household, member=child), 403),
    }
    for who, (headers, status) in refused.items():
        for method in ("POST", "GET"):
            r = hub.call(method, path if method == "POST" else f"/v1/households/{household}/referrals", headers,
                         **({"json": BODY} if method == "POST" else {}))
            assert r.status_code == status, (who, method, r.status_code, r.text)

    hostile = {**BODY, "services": [SLT, {**PHYSIO, "service_name": nhs}]}
    r = hub.call("POST", path, coordinator.auth, json=hostile)
    assert r.status_code == 422, r.text
    assert "/services/1/service_name" in r.text and nhs not in r.text
    assert referrals() == []

    key = {**coordinator.auth, "Idempotency-Key": f"ref-{tag}"}
    made = hub.call("POST", path, key, json=BODY)
    assert made.status_code == 202 and made.json()["parts"] == 2, made.text
    again = hub.call("POST", path, key, json=BODY)
    assert again.status_code == 202 and again.json() == {**made.json(), "status": "duplicate"}, again.text
    changed = hub.call("POST", path, key, json={**BODY, "services": [SLT]})
    assert changed.status_code == 409 and "Idempotency-Key" in changed.text, changed.text

    hub.eventually(lambda: len(referrals()) == 1, "the referral on the household's record")
    (only,) = referrals()
    assert only["referral_id"] == made.json()["referral_id"]
    assert sorted(s["service"]["service_name"] for s in only["services"]) == sorted(
        [SLT["service_name"], PHYSIO["service_name"]])
