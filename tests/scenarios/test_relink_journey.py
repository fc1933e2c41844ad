"""A report linked to the wrong child, put right through `hub up` over HTTP (seed 000, §5.7: siblings' records).

A coordinator links a report's NHS number to the wrong one of two siblings. The family has agreed to
share that child's health information, so the speech and language therapy report reaches the
paediatrician's webhook, the paediatric inbox and the family's own view. The coordinator finds the
mistake, undoes the link and links the right sibling: the paediatrician gets a recall notice at the
webhook and in the inbox, the family's copy leaves their view, and the right sibling's report follows
that sibling's consent (withheld until the family agrees, then shared). Meanwhile another family's
consent is acted on within seconds, and `hub audit verify` finds the audit chain intact. A coordinator
of another caseload cannot move the identifier, and is not told what it is.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from hub.demo.journey import ABUHB_PAEDS, ReportJourney, report_not_sent_journey
from tests.scenarios.running import AgencyEndpoint, Coordinator, RunningHub
from tests.scenarios.test_report_journey import PAEDIATRICS, send
from tests.support import bearer, run_hub

pytestmark = pytest.mark.scenario
PAEDS = ABUHB_PAEDS["agency_id"]
PAEDIATRICIAN = bearer("agency", "abuhb-paediatrics", agency=PAEDS)


@dataclass
class Family:
    coordinator: Coordinator
    household: str
    children: list[str]
    journey: ReportJourney
    nhs: str
    parent: dict[str, str]

    @property
    def report_id(self) -> str:
        return f"slt-{self.journey.child_id}"


def family_with_report(hub: RunningHub, children: int) -> Family:
    """A household whose first child's NHS number is linked and whose SLT report has been sent."""
    tag = "t" + uuid.uuid4().hex[:9]
    coordinator = Coordinator(hub, f"cc-{tag}")
    household, members = coordinator.enrol(children=children)
    j = report_not_sent_journey(datetime.now(UTC), seed=random.randrange(300_000, 900_000), child_id=members[0],
                                household_id=household)
    agency_events = [e for e in j.before_consent if e.record_type != "IdentityLinked"]
    nhs = next(e.subject for e in agency_events if e.record_type == "ReportIssued")
    coordinator.link(household, members[0], nhs.system, nhs.value)
    send(hub, agency_events)
    return Family(coordinator, household, members, j, nhs.value, bearer("parent", f"parent-{tag}",
                                                                          household=household))


def give_consent(hub: RunningHub, family: Family, child: str) -> None:
    """The parent permits health services to share ``child``'s information for direct care."""
    consent = json.loads(family.journey.consent[0].body["fhir_consent"])
    consent = json.loads(json.dumps(consent).replace(family.journey.child_id, child))
    r = hub.call("POST", f"/v1/households/{family.household}/children/{child}/consents", family.parent, json=consent)
    assert r.status_code == 202, r.text


def at_webhook(webhook: AgencyEndpoint, child: str, report_id: str, kind: str = "share") -> list[dict[str, Any]]:
    return [d for d in webhook.received(child, kind) if d["json"]["information"].get("report_id") == report_id]


def in_inbox(hub: RunningHub, child: str, report_id: str, kind: str = "share") -> list[dict[str, Any]]:
    items = hub.call("GET", f"/v1/agencies/{PAEDS}/inbox", PAEDIATRICIAN, params={"limit": 500}).json()["items"]
    return [i for i in items if i["kind"] == kind and i["content"]["child_id"] == child
            and i["content"]["information"].get("report_id") == report_id]


def family_copies(hub: RunningHub, family: Family, child: str) -> list[dict[str, Any]]:
    r = hub.call("GET", f"/v1/households/{family.household}/family-copies", family.parent)
    assert r.status_code == 200, r.text
    return [c for c in r.json()["copies"] if c["child_id"] == child and c["kind"] == "share"]


def paediatric_share(family: Family, child: str) -> dict[str, Any] | None:
    """The coordinator's view of the SLT report's decision for the paediatric service, for ``child``."""
    for s in family.coordinator.shares(family.household):
        if s["child_id"] == child and s["record_type"] == "ReportIssued" and s["recipient_service"] == PAEDIATRICS:
            return s
    return None


@dataclass
class Relinked:
    family: Family
    wrong: str
    right: str
    shared: dict[str, Any]  # the wrongly shared copy as the paediatrician's webhook received it
    other: Family
    other_consent_at: float  # when the other family gave consent, during the correction


@pytest.fixture(scope="module")
def relinked(hub: RunningHub, paediatrics_webhook: AgencyEndpoint) -> Relinked:
    family = family_with_report(hub, children=2)
    wrong, right = family.children
    give_consent(hub, family, wrong)
    (shared,) = hub.eventually(lambda: at_webhook(paediatrics_webhook, wrong, family.report_id),
                               "the wrongly linked report at the paediatrician's webhook")
    hub.eventually(lambda: in_inbox(hub, wrong, family.report_id), "the wrongly linked report in the inbox")
    hub.eventually(lambda: family_copies(hub, family, wrong), "the family's copy of the wrongly linked report")
    other = family_with_report(hub, children=1)
    hub.eventually(lambda: paediatric_share(other, other.children[0]), "the other family's report to be decided")

    c = family.coordinator
    c._call("POST", f"/v1/households/{family.household}/members/{wrong}/identifiers/unlink", 202,
            json={"system": "nhs-number", "value": family.nhs, "reason": "linked to the wrong sibling"})
    other_consent_at = time.time()
    give_consent(hub, other, other.children[0])
    c.link(family.household, right, "nhs-number", family.nhs)
    return Relinked(family, wrong, right, shared, other, other_consent_at)


def test_the_paediatrician_is_told_to_withdraw_the_wrongly_shared_report(
        hub: RunningHub, relinked: Relinked, paediatrics_webhook: AgencyEndpoint) -> None:
    f = relinked.family
    (recall,) = hub.eventually(lambda: at_webhook(paediatrics_webhook, relinked.wrong, f.report_id, "recall"),
                               "the recall notice at the paediatrician's webhook")
    assert recall["json"]["recalls"] == relinked.shared["json"]["delivery_id"]
    assert recall["json"]["reason"] == "linked to the wrong child in error"
    assert f.nhs not in recall["body"].decode()
    (item,) = hub.eventually(lambda: in_inbox(hub, relinked.wrong, f.report_id, "recall"),
                             "the recall notice in the paediatric inbox")
    assert item["delivery_id"] == recall["json"]["delivery_id"]
    time.sleep(1)  # exactly once: a second pass would have sent another by now
    assert len(at_webhook(paediatrics_webhook, relinked.wrong, f.report_id, "recall")) == 1


def test_the_familys_copy_is_withdrawn_and_the_wrong_child_loses_the_report(
        hub: RunningHub, relinked: Relinked) -> None:
    f = relinked.family
    hub.eventually(lambda: not family_copies(hub, f, relinked.wrong), "the family's wrong copy to be withdrawn",
                   lambda: family_copies(hub, f, relinked.wrong))
    hub.eventually(lambda: not [e for e in f.coordinator.timeline(f.household, child_id=relinked.wrong)
                                if e["record_type"] == "ReportIssued"],
                   "the report to leave the wrong child's timeline")


def test_the_right_child_is_shared_only_once_the_family_agrees_for_that_child(
        hub: RunningHub, relinked: Relinked, paediatrics_webhook: AgencyEndpoint) -> None:
    f = relinked.family
    withheld = hub.eventually(lambda: (s := paediatric_share(f, relinked.right)) and s["state"] == "withheld" and s,
                              "the report to be decided for the right child", lambda: f.coordinator.shares(f.household))
    assert withheld["outcome"] != "permit"  # the consent given was for the other sibling
    assert not at_webhook(paediatrics_webhook, relinked.right, f.report_id)

    give_consent(hub, f, relinked.right)
    (share,) = hub.eventually(lambda: at_webhook(paediatrics_webhook, relinked.right, f.report_id),
                              "the report at the webhook for the right child")
    assert share["json"]["decision"]["basis"] == "consent"
    hub.eventually(lambda: family_copies(hub, f, relinked.right), "the family's copy for the right child")


def test_another_familys_consent_is_acted_on_within_seconds_meanwhile(
        hub: RunningHub, relinked: Relinked, paediatrics_webhook: AgencyEndpoint) -> None:
    o = relinked.other
    (share,) = hub.eventually(lambda: at_webhook(paediatrics_webhook, o.children[0], o.report_id),
                              "the other family's report at the webhook",
                              lambda: [(json.loads(r["body"]).get("kind"), json.loads(r["body"]).get("child_id"),
                                        json.loads(r["body"]).get("information", {}).get("report_id"))
                                       for r in paediatrics_webhook.requests] + [o.children[0], o.report_id])
    assert share["at"] - relinked.other_consent_at < 20, "sharing stalled for another family during the relink"


def test_the_audit_chain_verifies_after_the_correction(hub: RunningHub, relinked: Relinked) -> None:
    hub.eventually(lambda: paediatric_share(relinked.family, relinked.right), "the relink to be projected")
    verified = run_hub(["audit", "verify"], hub.env)
    assert verified.returncode == 0 and "audit log intact" in verified.stdout, verified.stdout + verified.stderr
    ig = bearer("ig_officer", "ig-1")
    r = hub.call("GET", "/v1/audit/records", ig, params={"household_id": relinked.family.household})
    assert r.status_code == 200, r.text
    actions = {x["action"] for x in r.json()}
    assert {"identity_link", "identity_unlink"} <= actions, actions


def test_a_coordinator_of_another_caseload_cannot_move_the_identifier(hub: RunningHub, relinked: Relinked) -> None:
    f = relinked.family
    stranger = Coordinator(hub, f"cc-t{uuid.uuid4().hex[:9]}")
    household, (child,) = stranger.enrol(children=1)
    body = {"system": "nhs-number", "value": f.nhs, "reason": "matched on a referral"}

    taken = hub.call("POST", f"/v1/households/{household}/members/{child}/identifiers", stranger.auth, json=body)
    assert taken.status_code == 409, taken.text
    assert f.nhs not in taken.text and "only a coordinator of both households" in taken.text
    for path in (f"/v1/households/{f.household}/members/{relinked.right}/identifiers/unlink",
                 f"/v1/households/{f.household}/members/{child}/identifiers"):
        r = hub.call("POST", path, stranger.auth, json=body)
        assert r.status_code in (403, 404), r.text
        assert f.nhs not in r.text
    time.sleep(1)
    assert paediatric_share(f, relinked.right) is not None  # still the right child's
    assert not [s for s in stranger.shares(household) if s["record_type"] == "ReportIssued"]
