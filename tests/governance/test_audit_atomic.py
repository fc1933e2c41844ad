"""Every state change writes its audit record in the same transaction as the change, or the change does
not happen: with the database refusing the audit insert of one action (a trigger, on real SQLite and
PostgreSQL), linking, unlinking, giving, confirming and withdrawing consent, a safeguarding override, a
hold release and an erasure each fail and leave nothing of themselves behind; the sharing step's
decisions, cancellations, withdrawal notices and recalls are not written either (the child is retried),
and once the trail takes them each has exactly one record."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from hub.api.app import create_app
from hub.db.store import utcnow
from hub.governance.audit import AuditLog
from hub.ingest.services import Services
from hub.sharing import delivery
from hub.sharing.follower import Follower
from hub.stream import projection
from tests.api.conftest import token_header
from tests.support import ROOT, row_counts

NHS = "9990000018"  # the Patient of the collection bundle
BUNDLE = ROOT / "tests" / "connectors" / "fixtures" / "health" / "bundle-collection-cerys.json"


def project(services: Services) -> None:
    """What the stream worker does with everything logged so far (idempotent: projected rows stay as they are)."""
    for batch in services.store.iter_log(batch=1000):
        decoded = [services.serde.decode(r.value) for r in batch]
        projection.apply(services.store, [(d.record_type, services.catalogue.writer(d.record_type).ce_type,
                                           d.record) for d in decoded])


def refuse_audit(services: Services, action: str) -> None:
    """From now on the database refuses an audit record of ``action`` (an outage, a full disk, a bug)."""
    with services.store.engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(
                f"create trigger if not exists refuse_{action} before insert on audit_log when new.action = '{action}' "
                "begin select raise(abort, 'audit record refused'); end")
        else:
            conn.exec_driver_sql(
                f"create or replace function refuse_{action}() returns trigger language plpgsql as $$ begin "
                f"if new.action = '{action}' then raise exception 'audit record refused'; end if; "
                "return new; end $$")
            conn.exec_driver_sql(f"drop trigger if exists refuse_{action} on audit_log")
            conn.exec_driver_sql(f"create trigger refuse_{action} before insert on audit_log for each row "
                                 f"execute function refuse_{action}()")


@pytest.fixture
async def app(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(services), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as c:
        yield c


class Family:
    def __init__(self, client: httpx.AsyncClient, services: Services) -> None:
        self.client, self.services = client, services
        self.coordinator = token_header(services, "coordinator", "cc-1")
        self.household = self.child = ""

    async def enrol(self, *, link: bool = True) -> None:
        r = await self.client.post("/v1/households", json={"coordinator_id": "cc-1"}, headers=self.coordinator)
        self.household = r.json()["household_id"]
        r = await self.client.post(f"/v1/households/{self.household}/members", headers=self.coordinator,
                                   json={"kind": "child", "relationship": "child"})
        self.child = r.json()["member_id"]
        if link:
            r = await self.link("link")
            assert r.status_code == 202, r.text

    async def link(self, action: str) -> httpx.Response:
        path = f"/v1/households/{self.household}/members/{self.child}/identifiers"
        return await self.client.post(path + ("/unlink" if action == "unlink" else ""), headers=self.coordinator,
                                      json={"system": "nhs-number", "value": NHS, "reason": "enrolment"})

    @property
    def consents(self) -> str:
        return f"/v1/households/{self.household}/children/{self.child}/consents"

    def consent(self, directive_id: str) -> dict[str, Any]:
        return {"resourceType": "Consent", "id": directive_id, "status": "active",
                "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                      "code": "patient-privacy"}]},
                "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
                "patient": {"reference": f"Patient/{self.child}"}, "dateTime": "2026-01-10T10:00:00Z",
                "performer": [{"reference": "RelatedPerson/parent-1"}],
                "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                           "code": "OPTIN"}]},
                "provision": {"type": "permit", "actor": [{"role": {"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                    "reference": {"identifier": {"system": "urn:family-hub:sector", "value": "health"}}}],
                    "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                                 "code": "TREAT"}]}}

    async def records(self) -> None:
        """The trust's collection (with a held diagnosis) about the linked child, projected."""
        r = await self.client.post("/v1/ingest/health", content=BUNDLE.read_bytes(), headers={
            "Content-Type": "application/fhir+json", **token_header(self.services, "agency", "abuhb-pas",
                                                                     agency="7A6")})
        assert r.status_code == 200, r.text
        project(self.services)

    def held_entry(self) -> str:
        with self.services.store.engine.connect() as conn:
            return str(conn.execute(sa.text("select event_id from timeline_entries where record_type = "
                                            "'DiagnosisRecorded'")).scalar_one())


def audit_actions(services: Services) -> list[str]:
    with services.store.engine.connect() as conn:
        return [r[0] for r in conn.execute(sa.text("select action from audit_log order by seq"))]


def tables(services: Services) -> dict[str, int]:
    """Rows of every table but the key vault's (sealing the request may settle a data key first)."""
    return {t: n for t, n in row_counts(services.store).items() if t != "subject_keys"}


async def refused(family: Family, action: str, call: Any) -> httpx.Response:
    """Refuse ``action``'s audit record, make the call, and check it failed without changing a table."""
    refuse_audit(family.services, action)
    before, trail = tables(family.services), audit_actions(family.services)
    r = await call()
    assert r.status_code >= 500, r.text
    assert tables(family.services) == before
    assert audit_actions(family.services) == trail
    return r


async def test_link_and_unlink_do_not_happen_without_their_audit_record(
        app: httpx.AsyncClient, services: Services) -> None:
    family = Family(app, services)
    await family.enrol(link=False)
    await refused(family, "identity_link", lambda: family.link("link"))
    with services.store.engine.begin() as conn:
        conn.exec_driver_sql("drop trigger refuse_identity_link" + (" on audit_log" if conn.dialect.name
                                                                     == "postgresql" else ""))
    assert (await family.link("link")).status_code == 202  # the same link, once the trail takes it
    await refused(family, "identity_unlink", lambda: family.link("unlink"))


async def test_consent_given_confirmed_or_withdrawn_only_with_its_audit_record(
        app: httpx.AsyncClient, services: Services) -> None:
    family = Family(app, services)
    await family.enrol()
    project(services)
    r = await app.post(family.consents, json=family.consent("dir-1"), headers=family.coordinator)
    assert r.status_code == 202, r.text
    assert audit_actions(services).count("consent_change") == 1  # written with the change, not after it
    with services.store.engine.connect() as conn:
        [detail] = [json.loads(d) for (d,) in conn.execute(sa.text(
            "select detail from audit_log where action = 'consent_change'"))]
    assert detail["change"] == "granted" and detail["directive_id"] == "dir-1"
    project(services)
    assert Follower(services.store, "audit-tests").step(utcnow()).held  # the sharing step records the directive
    await refused(family, "consent_change",
                  lambda: app.post(family.consents, json=family.consent("dir-2"), headers=family.coordinator))
    await refused(family, "consent_change",
                  lambda: app.delete(f"{family.consents}/dir-1", headers=family.coordinator))


async def test_override_hold_release_and_erasure_only_with_their_audit_record(
        app: httpx.AsyncClient, services: Services) -> None:
    family = Family(app, services)
    await family.enrol()
    await family.records()
    base = f"/v1/households/{family.household}/children/{family.child}"
    lead = token_header(services, "safeguarding_lead", "sg-1")
    ends = (utcnow() + timedelta(days=30)).isoformat()
    ig = token_header(services, "ig_officer", "ig-1")
    await refused(family, "override", lambda: app.post(f"{base}/overrides", headers=lead, json={
        "recipient_agency_id": "7A6", "ends_at": ends,
        "justification": "child protection conference CP-77 decided to share"}))
    await refused(family, "release", lambda: app.post(f"{base}/holds/{family.held_entry()}/release", headers=ig,
                                                      json={"reason": "clinician agreed at review"}))
    await refused(family, "erasure", lambda: app.post("/v1/erasures", headers=ig, json={
        "member": {"household_id": family.household, "member_id": family.child},
        "reason": "erasure request ER-88"}))
    # the person who may not do it is refused before any of this: a coordinator cannot override
    r = await app.post(f"{base}/overrides", headers=family.coordinator, json={
        "recipient_agency_id": "7A6", "ends_at": ends, "justification": "no authority"})
    assert r.status_code == 403, r.text


# ---- the sharing step: decisions, cancellations, withdrawal notices and recalls ----------------------------------

SHARING_ACTIONS = ("share", "withhold", "hold", "override", "cancel", "withdrawal_notice", "recall")


def refuse_sharing_audit(services: Services, action: str | None = None) -> None:
    """From now on the database refuses the sharing step's audit records (of ``action``, or all of them)."""
    when = "new.actor = 'hub-sharing'" + (f" and new.action = '{action}'" if action else "")
    with services.store.engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(
                f"create trigger refuse_sharing before insert on audit_log when {when} "
                "begin select raise(abort, 'audit record refused'); end")
        else:
            conn.exec_driver_sql(
                "create or replace function refuse_sharing() returns trigger language plpgsql as $$ begin "
                f"if {when} then raise exception 'audit record refused'; end if; return new; end $$")
            conn.exec_driver_sql("create trigger refuse_sharing before insert on audit_log for each row "
                                 "execute function refuse_sharing()")


def accept_sharing_audit(services: Services) -> None:
    with services.store.engine.begin() as conn:
        conn.exec_driver_sql("drop trigger refuse_sharing" + (" on audit_log" if conn.dialect.name == "postgresql"
                                                              else ""))


def sharing_rows(services: Services) -> dict[str, list[Any]]:
    """The sharing step's decisions and deliveries as they stand (a consent directive it records is a change of
    its own, with its own record: it stays when the child's decisions fail, and they are retried with it)."""
    with services.store.engine.connect() as conn:
        return {
            "decisions": sorted(conn.execute(sa.text("select decision_id, current from share_decisions")).all()),
            "deliveries": sorted(conn.execute(sa.text("select delivery_id, kind, state from deliveries")).all()),
        }


def sharing_trail(services: Services) -> list[tuple[str, str]]:
    """The sharing step's records of decisions and deliveries, in order."""
    with services.store.engine.connect() as conn:
        return [(r[0], r[1]) for r in conn.execute(sa.text(
            "select action, data_ref from audit_log where actor = 'hub-sharing' and action <> 'consent_change' "
            "order by seq"))]


def each_recorded_once(services: Services) -> dict[str, int]:
    """Every decision, withdrawal notice and recall the hub holds has exactly one audit record, and every
    cancelled delivery one per cancellation (a share can be cancelled, queued again and cancelled again)."""
    trail = sharing_trail(services)
    refs: dict[str, list[str]] = {}
    for action, ref in trail:
        refs.setdefault(ref, []).append(action)
    with services.store.engine.connect() as conn:
        decisions = [r[0] for r in conn.execute(sa.text("select decision_id from share_decisions"))]
        cancelled = [r[0] for r in conn.execute(sa.text(
            "select delivery_id from deliveries where state = 'cancelled' or (state = 'in_doubt' and closed_at "
            "is not null)"))]
        notices = [r[0] for r in conn.execute(sa.text(
            "select delivery_id from deliveries where kind = 'withdrawal_notice'"))]
        recalls = [r[0] for r in conn.execute(sa.text("select delivery_id from deliveries where kind = 'recall'"))]
        every_delivery = {r[0] for r in conn.execute(sa.text("select delivery_id from deliveries"))}
    for d in decisions:
        assert len(refs.get(d, [])) == 1 and refs[d][0] in ("share", "withhold", "hold", "override"), (d, refs.get(d))
    for ids, action in ((notices, "withdrawal_notice"), (recalls, "recall")):
        for d in ids:
            assert [a for a in refs.get(d, []) if a != "cancel"] == [action], (action, d, refs.get(d))
    assert all("cancel" in refs.get(d, []) for d in cancelled)
    cancels = [r for a, r in trail if a == "cancel"]
    assert set(cancels) <= every_delivery
    counts = {"decisions": len(decisions), "cancels": len(cancels), "notices": len(notices), "recalls": len(recalls)}
    assert len(trail) == sum(counts.values())  # and nothing else
    return counts


def share_step(services: Services, at: Any = None) -> Any:
    step = Follower(services.store, "audit-tests").step(at or utcnow())
    assert step.held
    return step


def failed_children(services: Services) -> list[str]:
    with services.store.engine.connect() as conn:
        return [r[0] for r in conn.execute(sa.text("select child_id from sharing_failures"))]


async def test_share_decisions_only_with_their_audit_records(app: httpx.AsyncClient, services: Services) -> None:
    family = Family(app, services)
    await family.enrol()
    await family.records()
    before, trail = sharing_rows(services), sharing_trail(services)
    refuse_sharing_audit(services)  # the audit insert fails between the decisions and their records
    share_step(services)
    assert sharing_rows(services) == before and sharing_trail(services) == trail  # neither
    assert failed_children(services) == [family.child]  # the child waits for a retry; the cursor moved on
    accept_sharing_audit(services)
    share_step(services, utcnow() + timedelta(minutes=5))  # the retry, once its backoff has passed
    assert failed_children(services) == []
    counts = each_recorded_once(services)
    assert counts["decisions"] > 0
    with services.store.engine.connect() as conn:
        details = [json.loads(d) for (d,) in conn.execute(sa.text(
            "select detail from audit_log where actor = 'hub-sharing'"))]
    assert all(set(d) >= {"information", "recipient", "rule"} for d in details)
    assert NHS not in json.dumps(details)  # hub ids and codes only
    assert not AuditLog(services.store).verify().problems


async def test_cancellations_notices_and_recalls_only_with_their_audit_records(
        app: httpx.AsyncClient, services: Services) -> None:
    family = Family(app, services)
    await family.enrol()
    await family.records()
    clock = [utcnow()]

    def step() -> None:
        clock[0] += timedelta(minutes=10)  # later each time: past any retry's backoff
        share_step(services, clock[0])

    async def refuse_then_accept(action: str, change: Any) -> None:
        """``change``, then the step with ``action``'s records refused (nothing happens), then accepted."""
        await change()
        project(services)
        before, trail = sharing_rows(services), sharing_trail(services)
        refuse_sharing_audit(services, action)
        step()
        assert sharing_rows(services) == before and sharing_trail(services) == trail
        assert failed_children(services) == [family.child]
        accept_sharing_audit(services)
        step()
        assert failed_children(services) == []
        states = dict((d, st) for d, _k, st in before["deliveries"])
        now_cancelled = {d for d, _k, st in sharing_rows(services)["deliveries"]
                         if st == "cancelled" and states.get(d) != "cancelled"}
        assert {r for a, r in sharing_trail(services)[len(trail):] if a == "cancel"} == now_cancelled
        assert each_recorded_once(services)

    def deny(directive_id: str) -> Any:
        consent = family.consent(directive_id)
        consent["provision"]["type"] = "deny"
        return lambda: app.post(family.consents, json=consent, headers=family.coordinator)

    step()  # the trust's records shared with its other services and the parents
    async with httpx.AsyncClient() as http:
        await delivery.deliver_due(services.store, http, clock[0])  # the parents' copy delivered, the rest to the inbox
    await refuse_then_accept("cancel", deny("dir-deny-1"))  # the family refuses: queued shares cancelled
    assert each_recorded_once(services)["cancels"] >= 2
    await refuse_then_accept("share", lambda: app.delete(f"{family.consents}/dir-deny-1", headers=family.coordinator))
    delivery.inbox(services.store, "7A6")  # the trust reads what it was sent again
    await refuse_then_accept("withdrawal_notice", deny("dir-deny-2"))  # refused again: the holder is told
    assert each_recorded_once(services)["notices"] >= 2
    await refuse_then_accept("recall", lambda: family.link("unlink"))  # linked to the wrong child in error
    counts = each_recorded_once(services)
    assert counts["recalls"] >= 1, counts
    assert not AuditLog(services.store).verify().problems
    # IG reads the trail of these decisions; the household's coordinator and the trust that received them do not
    ig = token_header(services, "ig_officer", "ig-1")
    r = await app.get("/v1/audit/records", params={"household_id": family.household, "action": "withdrawal_notice"},
                      headers=ig)
    assert r.status_code == 200 and len(r.json()) == counts["notices"], r.text
    for caller in (family.coordinator, token_header(services, "agency", "abuhb-pas", agency="7A6")):
        r = await app.get("/v1/audit/records", params={"household_id": family.household}, headers=caller)
        assert r.status_code == 403, r.text
