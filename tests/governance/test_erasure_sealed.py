"""Crypto-shredding reaches the projections: a timeline's summaries and records and the copies queued for
recipients are sealed at rest with the child's keys, so once an erasure shreds them the text is unreadable
wherever a row is still held, and reads as erased (not as garbage, nor an error); the sibling's record is
untouched. Real SQLite and PostgreSQL, the real projection and sharing step."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from hub.db.keyvault import SqlKeyVault
from hub.db.schema import alerts, consent_directives, deliveries, identity_links, timeline_entries
from hub.db.sealed import ERASED, PREFIX, member_key, sealer
from hub.db.store import Store
from hub.demo.journey import report_not_sent_journey
from hub.governance.erasure import Erasure, MemberRef
from hub.ingest.pseudonym import Pseudonymiser
from hub.sharing.alerts import list_alerts, raise_alert
from hub.stream import readmodel
from hub.wire.sealing import MasterKeyring
from tests.sharing.sharing_support import KEY, Feeder, stored_deliveries

NOW = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
HH = "hh-sealed"
TITLE = "Speech and language therapy report"


@pytest.fixture
def store(db_url: str) -> Store:
    s = Store.open(db_url)
    s.vault = SqlKeyVault(s, MasterKeyring.from_text(secrets.token_hex(32)))
    feeder = Feeder(s, NOW)
    for seed, child in ((981, "c-981"), (982, "c-982")):  # two siblings, each with their own record
        j = report_not_sent_journey(NOW - timedelta(days=seed - 981), seed=seed, child_id=child, household_id=HH)
        feeder.feed(j.before_consent + j.consent, NOW)
        with s.engine.begin() as conn:  # an alert that repeats a report's title, as ack_overdue words it
            raise_alert(conn, key=f"test:{child}", kind="ack_overdue", household_id=HH, child_id=child,
                        to_agency_id=None, to_service=None, now=NOW,
                        message=f"Paediatrics has not read '{TITLE}'", details={"title": TITLE})
    return s


def subjects_of(store: Store, child: str) -> list[str]:
    with store.engine.connect() as conn:
        return [r[0] for r in conn.execute(sa.select(identity_links.c.subject).where(
            identity_links.c.child_id == child))]


def titles(store: Store, child: str) -> list[str]:
    entries, _ = readmodel.timeline(store, HH, child_id=child, limit=100)
    return [str(e["summary"]) for e in entries]


def test_the_projection_holds_no_title_in_clear(store: Store) -> None:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(timeline_entries.c.summary, timeline_entries.c.record)).all()
        payloads = [r[0] for r in conn.execute(sa.select(deliveries.c.payload))]
        consents = [r[0] for r in conn.execute(sa.select(consent_directives.c.fhir_json))]
        said = [v for r in conn.execute(sa.select(alerts.c.message, alerts.c.details)) for v in r]
    assert rows and payloads and consents
    assert all(c.startswith(PREFIX) for c in consents) and all(v.startswith(PREFIX) for v in said)
    assert all(s.startswith(PREFIX) and r.startswith(PREFIX) for s, r in rows)
    assert all(p.startswith(PREFIX) for p in payloads)
    assert not any(TITLE in s or TITLE in r for s, r in rows) and not any(TITLE in p for p in payloads)
    assert said and not any(TITLE in v for v in said)
    assert {a["message"] for a in list_alerts(store, household_id=HH)} >= {f"Paediatrics has not read '{TITLE}'"}
    assert any(TITLE in t for t in titles(store, "c-981"))  # and the hub reads them


def test_shredded_keys_leave_the_projection_unreadable_and_read_as_erased(store: Store) -> None:
    before = titles(store, "c-981")
    sibling = titles(store, "c-982")
    assert isinstance(store.vault, SqlKeyVault)
    with store.engine.begin() as conn:  # the keys an erasure of c-981 shreds, the rows left where they are
        assert store.vault.shred(conn, [*subjects_of(store, "c-981"), member_key("c-981")]) >= 2
    after = titles(store, "c-981")
    assert len(after) == len(before) and set(after) == {ERASED}
    assert readmodel.child_records(store, HH, "c-981") == []  # no record to build a team or readiness from
    shares = stored_deliveries(store, deliveries.c.child_id == "c-981")
    assert shares and all(json.loads(d["payload"])["erased"] is True for d in shares)
    assert all(a["message"] == ERASED and a["details"] == {}
               for a in list_alerts(store, household_id=HH, open_only=False) if a["child_id"] == "c-981")
    # the sibling's record is sealed under keys of their own: untouched
    assert titles(store, "c-982") == sibling and any(TITLE in t for t in sibling)
    assert all(not json.loads(d["payload"]).get("erased")
               for d in stored_deliveries(store, deliveries.c.child_id == "c-982"))


def test_an_erasure_shreds_the_childs_keys_and_purges_their_rows(store: Store) -> None:
    assert isinstance(store.vault, SqlKeyVault)
    with store.engine.connect() as conn:
        sealed = conn.execute(sa.select(timeline_entries.c.event_id, timeline_entries.c.summary).where(
            timeline_entries.c.subject.in_(subjects_of(store, "c-981")))).all()
    result = Erasure(store, store.vault, Pseudonymiser(KEY.encode())).erase(
        MemberRef(HH, "c-981"), reason="request ER-7", actor="ig-1", actor_role="ig_officer")
    assert result.status == "erased" and result.keys_shredded >= 2
    assert titles(store, "c-981") == [] and stored_deliveries(store, deliveries.c.child_id == "c-981") == []
    # a copy of a row taken before (a replica, a dump without the key vault's live keys) opens no more
    seal = sealer(store)
    assert {seal.text(timeline_entries.c.summary, eid, value) for eid, value in sealed} == {ERASED}
    assert any(TITLE in t for t in titles(store, "c-982"))
