"""A deliverer killed mid-POST, then a withdrawal: the recipient may hold the report, so it is told.

A real `hub deliver` process is killed with SIGKILL while the agency's webhook holds its POST; real
SQLite and PostgreSQL, a real local HTTP endpoint; decisions come from the sharing step.
"""

from __future__ import annotations

import json
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hub.db.schema import deliveries
from hub.db.store import Store
from hub.demo.journey import ABUHB_PAEDS, report_not_sent_journey
from hub.sharing import delivery
from tests.sharing.sharing_support import Feeder, Webhook, deliver, stored_deliveries, withdraw_event
from tests.support import hub_env, keys_of, spawn, stop, wait_until

SERVICE = ABUHB_PAEDS["service_name"]


def paeds(store: Store, kind: str = "share") -> dict[str, Any]:
    found = [r for r in stored_deliveries(store, deliveries.c.kind == kind, deliveries.c.service == SERVICE)
             if json.loads(r["payload"])["information"].get("report_id") == "slt-child-doubt"]
    assert len(found) == 1, found
    return found[0]


def posts(hook: Webhook) -> list[dict[str, Any]]:
    return [json.loads(q["body"]) | {"key": q["headers"].get("Idempotency-Key")} for q in hook.requests
            if json.loads(q["body"])["information"].get("report_id") == "slt-child-doubt"]


def test_a_deliverer_killed_mid_post_then_a_withdrawal_sends_a_notice_and_the_family_sees_may_have_been_received(
        db_url: str, tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    store = keys_of(Store.open(db_url), tmp_path / "data")  # the deliverer opens the payloads it seals
    feeder = Feeder(store, now)
    j = report_not_sent_journey(now, seed=411, child_id="child-doubt", household_id="hh-doubt")
    feeder.feed(j.before_consent + j.consent, now)
    hook = Webhook(delay=20)  # the agency's endpoint holds the POST: the deliverer dies waiting
    delivery.set_webhook(store, ABUHB_PAEDS["agency_id"], hook.url, "k")
    env = hub_env(database_url=db_url, data_dir=tmp_path / "data", delivery_mode="process")
    proc = spawn(["deliver", "--interval", "0.05"], env, tmp_path / "deliver.log")
    try:
        wait_until(lambda: paeds(store)["state"] == "sending", 60, "the share marked sending before its POST")
    finally:
        stop(proc, signal.SIGKILL, timeout=10)
    share = paeds(store)
    assert share["attempt_id"] and share["sending_at"] is not None

    # the claim expires; the next deliverer finds the outcome unknown and tries again (consent stands),
    # but the agency answers 503: the share stays in doubt — the first POST may have got there
    hook.delay, hook.status = 0, 503
    later = now + timedelta(minutes=2)
    deliver(store, later)
    share = paeds(store)
    assert share["state"] == "in_doubt" and share["attempts"] == 1

    # the family withdraws: not cancelled as if never sent, but closed in doubt and the agency told
    feeder.feed([withdraw_event(j.directive_id, j.subject, later)], later)
    share = paeds(store)
    assert share["state"] == "in_doubt" and share["closed_at"] is not None
    notice = paeds(store, kind="withdrawal_notice")
    assert notice["state"] == "queued" and notice["round"] == share["round"] + 1
    listed = [s for s in delivery.recipient_states(store, "hh-doubt", "child-doubt")
              if s["recipient_service"] == SERVICE and s["delivery_id"] == share["delivery_id"]]
    assert [(s["state"], s["note"]) for s in listed] == [("in_doubt", "may have been received")]

    hook.status = 200
    deliver(store, later + timedelta(minutes=5))
    deliver(store, later + timedelta(minutes=60))  # the closed share is never sent again
    sent = posts(hook)
    assert [p["kind"] for p in sent if p["kind"] == "withdrawal_notice"] == ["withdrawal_notice"]
    assert {p["key"] for p in sent if p["kind"] == "share"} == {share["delivery_id"]}  # one id: receivers dedupe
    assert paeds(store, kind="withdrawal_notice")["state"] == "delivered"
    assert paeds(store)["state"] == "in_doubt"
    hook.close()
    store.engine.dispose()


def test_an_in_doubt_share_is_sent_again_while_consent_stands(db_url: str, tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    store = keys_of(Store.open(db_url), tmp_path / "data")  # the deliverer opens the payloads it seals
    feeder = Feeder(store, now)
    j = report_not_sent_journey(now, seed=412, child_id="child-doubt", household_id="hh-doubt")
    feeder.feed(j.before_consent + j.consent, now)
    hook = Webhook(delay=20)
    delivery.set_webhook(store, ABUHB_PAEDS["agency_id"], hook.url, "k")
    env = hub_env(database_url=db_url, data_dir=tmp_path / "data", delivery_mode="process")
    proc = spawn(["deliver", "--interval", "0.05"], env, tmp_path / "deliver.log")
    try:
        wait_until(lambda: paeds(store)["state"] == "sending", 60, "the share marked sending before its POST")
    finally:
        stop(proc, signal.SIGKILL, timeout=10)
    hook.delay = 0
    deliver(store, now + timedelta(seconds=30))  # the claim still stands: nothing happens yet
    assert paeds(store)["state"] == "sending"
    deliver(store, now + timedelta(minutes=2))
    share = paeds(store)
    assert share["state"] == "delivered" and share["closed_at"] is None
    assert not [p for p in posts(hook) if p["kind"] == "withdrawal_notice"]
    hook.close()
    store.engine.dispose()
