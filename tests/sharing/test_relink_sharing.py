"""A link corrected — unlinked from the wrong child and linked to the right one — never breaks the sharing
step: the right child is decided afresh, what the wrong link shared is recalled, and other families'
withdrawals are acted on in the same pass. A child whose pass fails is skipped and retried; the cursor
moves on for everyone else. Real SQLite and PostgreSQL, no broker (the feed is the database's)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from hub.core.events import InboundEvent
from hub.db.schema import deliveries, share_decisions
from hub.db.store import Store
from hub.demo.journey import ABUHB_PAEDS, ReportJourney, report_not_sent_journey
from hub.sharing import failures, processor
from hub.sharing.alerts import list_alerts
from hub.sharing.inbox import family_copies, inbox
from tests.sharing.sharing_support import Feeder, deliver, stored_deliveries, withdraw_event

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DL = deliveries.c


@pytest.fixture
def store(db_url: str) -> Store:
    return Store.open(db_url)


def rows(store: Store, *where: Any) -> list[dict[str, Any]]:
    return stored_deliveries(store, *where)


def nhs_link(j: ReportJourney) -> InboundEvent:
    (link,) = [e for e in j.before_consent if e.record_type == "IdentityLinked" and e.subject.system == "nhs-number"]
    return link


def shared_and_delivered(store: Store, feeder: Feeder, seed: int) -> ReportJourney:
    j = report_not_sent_journey(NOW, seed=seed, child_id=f"c-{seed}", household_id=f"hh-{seed}")
    feeder.feed(j.before_consent + j.consent, NOW)
    return j


def test_a_corrected_link_recalls_what_it_shared_and_withdrawals_elsewhere_go_on(store: Store) -> None:
    feeder = Feeder(store, NOW)
    wrong = shared_and_delivered(store, feeder, 601)
    other = shared_and_delivered(store, feeder, 602)
    deliver(store, NOW + timedelta(minutes=1))  # the family copies reach the families' view
    inbox(store, ABUHB_PAEDS["agency_id"], limit=500, now=NOW + timedelta(minutes=1))  # paediatrics reads its inbox
    held = rows(store, DL.child_id == wrong.child_id, DL.kind == "share", DL.state == "delivered")
    assert held and {r["recipient_kind"] for r in held} >= {"family"}
    assert [c for c in family_copies(store, wrong.household_id) if c["kind"] == "share"]

    link = nhs_link(wrong)
    at = NOW + timedelta(minutes=5)
    undo = replace(link, source_version=2, occurred_at=at, body={**link.body, "action": "unlink"})
    right = replace(link, source_id=f"link-c-603-{link.subject.system}", occurred_at=at + timedelta(seconds=1),
                    body={**link.body, "child_id": "c-603"})
    result = feeder.feed([undo, right, withdraw_event(other.directive_id, other.subject, at)], at)

    recalls = rows(store, DL.kind == "recall")
    assert result.recalls == len(held) == len(recalls)
    assert {r["recalls"] for r in (json.loads(x["payload"]) for x in recalls)} == {h["delivery_id"] for h in held}
    for r in recalls:
        body = json.loads(r["payload"])
        assert body["reason"] == "linked to the wrong child in error" and body["kind"] == "recall"
        assert r["state"] == ("delivered" if r["recipient_kind"] == "family" else "queued")
    assert not [c for c in family_copies(store, wrong.household_id) if c["kind"] == "share"]  # withdrawn
    family_held = [h["delivery_id"] for h in held if h["recipient_kind"] == "family"]
    assert {r["state"] for r in rows(store, DL.delivery_id.in_(family_held))} == {"recalled"}
    with store.engine.connect() as conn:  # the right child is decided afresh for the same report
        assert conn.execute(sa.select(sa.func.count()).select_from(share_decisions).where(
            share_decisions.c.child_id == "c-603")).scalar()
    notices = rows(store, DL.child_id == other.child_id, DL.kind == "withdrawal_notice")
    assert notices  # the other family's withdrawal was acted on in the same pass
    paeds = inbox(store, ABUHB_PAEDS["agency_id"], limit=500, now=at)[0]
    assert [i for i in paeds if i["kind"] == "recall" and i["content"]["child_id"] == wrong.child_id]
    assert not feeder.feed([], at + timedelta(minutes=1)).recalls  # exactly once


def test_a_child_whose_pass_fails_is_skipped_and_retried_while_others_are_decided(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    feeder = Feeder(store, NOW)
    broken = report_not_sent_journey(NOW, seed=611, child_id="c-611", household_id="hh-611")
    fine = report_not_sent_journey(NOW, seed=612, child_id="c-612", household_id="hh-612")
    real = processor._sync_child

    def failing(conn: Any, child_id: str, *args: Any, **kwargs: Any) -> None:
        if child_id == broken.child_id:
            raise RuntimeError("this child's records cannot be decided")
        real(conn, child_id, *args, **kwargs)

    monkeypatch.setattr(processor, "_sync_child", failing)
    feeder.feed(broken.before_consent + fine.before_consent, NOW)

    assert rows(store, DL.child_id == fine.child_id) and not rows(store, DL.child_id == broken.child_id)
    (failure,) = failures.failed(store)
    assert failure["child_id"] == broken.child_id and failure["attempts"] == 1
    assert list_alerts(store, household_id=broken.household_id, kind="sharing_failed")
    feeder.follow(NOW + timedelta(seconds=1))  # not due yet: nothing
    assert failures.failed(store)[0]["attempts"] == 1

    monkeypatch.setattr(processor, "_sync_child", real)  # mended: the retry decides the child
    feeder.follow(NOW + timedelta(minutes=1))
    assert rows(store, DL.child_id == broken.child_id) and not failures.failed(store)
