"""The sharing step follows the timeline's change feed: one holder of the cursor at a time, takeover
when the holder goes, decisions and cursor committed together, consents reaching children through
their links. Real SQLite and PostgreSQL, no broker (the feed is the database's)."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hub.core.settings import Settings
from hub.db.keyvault import SqlKeyVault, load_keyring
from hub.db.lease import Lease
from hub.db.schema import consent_directives, deliveries, share_decisions
from hub.db.store import Store, utcnow
from hub.demo.journey import ABUHB_PAEDS, report_not_sent_journey
from hub.governance.erasure import Erasure, MemberRef
from hub.sharing import alert_sync, processor
from hub.sharing.alerts import raise_alert
from hub.sharing.follower import LEASE, Follower, lag, read_changes
from hub.sharing.record_memo import RecordMemo
from hub.stream import projection
from tests.sharing.sharing_support import KEY, Feeder, stored_deliveries
from tests.support import wait_until

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(db_url: str) -> Store:
    return Store.open(db_url)


def count(store: Store, table: sa.Table) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def paeds_share(store: Store, report_id: str) -> dict[str, Any]:
    found = stored_deliveries(store, deliveries.c.kind == "share", deliveries.c.service == ABUHB_PAEDS["service_name"])
    (share,) = [d for d in found if report_id in d["payload"]]
    return share


def project(feeder: Feeder, events: list[Any]) -> None:
    """What the stream worker does: projection only (the feed grows, nobody has decided yet)."""
    projection.apply(feeder.store, feeder.decode(events))


def test_one_follower_holds_the_cursor_and_another_takes_over_where_it_stopped(store: Store) -> None:
    feeder = Feeder(store, NOW)
    j = report_not_sent_journey(NOW, seed=401, child_id="c-401", household_id="hh-401")
    project(feeder, j.before_consent)
    a, b = Follower(store, "worker-a"), Follower(store, "worker-b")
    first = a.step(NOW)
    assert first.held and first.result.decisions > 0
    assert not b.step(NOW).held  # a holds the lease: b decides nothing
    decided = count(store, share_decisions)
    assert lag(store) == (first.position, first.position)

    project(feeder, j.consent)
    a.release()  # a clean stop gives the cursor up at once
    taken = b.step(NOW + timedelta(seconds=1))
    assert taken.held and taken.result.queued == 2  # the consent re-decided the withheld report and assessment
    assert count(store, share_decisions) == decided + 2  # nothing a had decided was decided again
    assert paeds_share(store, f"slt-{j.child_id}")["state"] == "queued"


def test_a_dead_holder_is_replaced_after_its_lease_and_its_late_pass_is_rolled_back(store: Store) -> None:
    feeder = Feeder(store, NOW)
    j = report_not_sent_journey(NOW, seed=402, child_id="c-402", household_id="hh-402")
    a, b = Follower(store, "worker-a"), Follower(store, "worker-b")
    assert a.step(NOW).held
    project(feeder, j.before_consent)
    assert not b.step(NOW + LEASE / 2).held  # a's lease still runs
    later = NOW + LEASE + timedelta(seconds=1)  # a went silent: its lease lapsed
    taken = b.step(later)
    assert taken.held and taken.result.decisions > 0
    decided = count(store, share_decisions)

    # a wakes up believing it still holds the cursor, with changes b has not read yet
    project(feeder, j.consent)
    late = a.step(NOW + timedelta(seconds=1))
    assert not late.held  # the cursor is b's: a's decisions were rolled back with its cursor move
    assert count(store, share_decisions) == decided
    assert paeds_share(store, f"slt-{j.child_id}")["state"] == "withheld"
    done = b.step(later + timedelta(seconds=1))
    assert done.result.queued == 2 and paeds_share(store, f"slt-{j.child_id}")["state"] == "queued"


def _waiting_on_a_lock(store: Store) -> bool:
    with store.engine.connect() as conn:
        return bool(conn.execute(sa.text("select count(*) from pg_stat_activity where datname = current_database() "
                                         "and wait_event_type = 'Lock'")).scalar_one())


def test_a_pass_longer_than_the_lease_keeps_the_cursor(pg_url: str) -> None:
    """With two workers, a pass that outlives the lease (a big burst, a slow database) renews it while it
    works: the other worker does not take the cursor over, and the pass's decisions commit."""
    store = Store.open(pg_url)
    feeder = Feeder(store, NOW)
    j = report_not_sent_journey(NOW, seed=404, child_id="c-404", household_id="hh-404")
    lease = timedelta(seconds=1.5)
    a, b = Follower(store, "worker-a", lease=lease), Follower(store, "worker-b", lease=lease)
    assert a.step(utcnow()).held
    project(feeder, j.before_consent)
    holder = store.engine.connect()  # the pass's decisions wait for this lock: the pass lasts 2 leases
    holder.execute(sa.text("lock table share_decisions in share mode"))
    passes: list[Any] = []
    worker_a = threading.Thread(target=lambda: passes.append(a.step(utcnow())))
    try:
        worker_a.start()
        wait_until(lambda: _waiting_on_a_lock(store), 30, "worker-a's pass to wait on its decisions")
        time.sleep(2 * lease.total_seconds())
        assert Lease(store, "sharing", "worker-b", lease).claim() is None  # worker-a renewed it during its pass
    finally:
        holder.rollback()
        holder.close()
        worker_a.join(30)
    [done] = passes
    assert done.held and done.result.decisions > 0 and count(store, share_decisions) == done.result.decisions
    assert not b.step(utcnow()).held and lag(store) == (done.position, done.position)
    store.engine.dispose()


def test_a_consent_sent_before_its_link_permits_the_report_when_the_link_arrives(store: Store) -> None:
    feeder = Feeder(store, NOW)
    j = report_not_sent_journey(NOW, seed=403, child_id="c-403", household_id="hh-403")
    hub_link = [e for e in j.before_consent if e.record_type == "IdentityLinked" and e.subject == j.subject]
    rest = [e for e in j.before_consent if e not in hub_link]
    feeder.feed(rest + j.consent, NOW)  # the consent's subject (hub-child-id) is not linked yet: parked
    assert paeds_share(store, f"slt-{j.child_id}")["state"] == "withheld"
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(consent_directives)).first() is None
    r = feeder.feed(hub_link, NOW + timedelta(minutes=1))
    assert r.queued == 2
    assert paeds_share(store, f"slt-{j.child_id}")["state"] == "queued"


def test_undoing_the_link_a_consent_came_through_cancels_what_it_permitted(store: Store) -> None:
    feeder = Feeder(store, NOW)
    j = report_not_sent_journey(NOW, seed=404, child_id="c-404", household_id="hh-404")
    feeder.feed(j.before_consent + j.consent, NOW)
    assert paeds_share(store, f"slt-{j.child_id}")["state"] == "queued"
    (link,) = [e for e in j.before_consent if e.record_type == "IdentityLinked" and e.subject == j.subject]
    undo = replace(link, source_version=2, occurred_at=NOW + timedelta(minutes=5),
                   body={**link.body, "action": "unlink", "reason": "wrong child"})
    feeder.feed([undo], NOW + timedelta(minutes=5))
    with store.engine.connect() as conn:
        (directive,) = conn.execute(sa.select(consent_directives)).all()
    assert directive.child_id is None  # the directive waits for its subject's next link
    share = paeds_share(store, f"slt-{j.child_id}")
    assert share["state"] == "cancelled" and "R3-default-deny" in share["why"]


def test_a_pass_that_read_a_child_before_their_erasure_decides_nothing_for_them(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    feeder = Feeder(store, NOW)
    j = report_not_sent_journey(NOW, seed=405, child_id="c-405", household_id="hh-405")
    project(feeder, j.before_consent)
    home = (j.household_id, j.child_id)
    with store.engine.connect() as conn:  # what a pass in flight had read before the erasure committed
        changes_before = read_changes(conn, 0)
    read_before = processor.child_records(store, [home])
    assert changes_before and read_before[home]
    settings = Settings(data_dir=tmp_path / "data", pseudonym_key=KEY)
    Erasure(store, SqlKeyVault(store, load_keyring(settings)), feeder.pseudonymise).erase(
        MemberRef(j.household_id, j.child_id), reason="right to erasure request, ticket 405", actor="ig-1")
    monkeypatch.setattr(processor, "child_records",
                        lambda _store, homes, _memo=None: {h: read_before.get(h, []) for h in homes})
    memo = RecordMemo()
    for e in read_before[home]:
        memo.put(e["event_id"], 1, e)
    late = processor.process_changes(store, changes_before, now=NOW, memo=memo)
    assert late.decisions == 0
    assert len(memo) == 0  # nothing of the erased child is kept for a later pass
    assert count(store, share_decisions) == 0 and count(store, deliveries) == 0


def test_alerts_in_the_feed_are_read_past_and_the_lag_comes_back_to_zero(store: Store) -> None:
    feeder = Feeder(store, NOW)
    j = report_not_sent_journey(NOW, seed=406, child_id="c-406", household_id="hh-406")
    project(feeder, j.before_consent)
    follower = Follower(store, "worker-a")
    assert follower.step(NOW).result.decisions > 0
    decided = count(store, share_decisions)
    with store.engine.begin() as conn:  # an alert raised and resolved: rows of the feed for the live streams
        raise_alert(conn, key="test-alert:c-406", kind="readiness", household_id=j.household_id,
                    child_id=j.child_id, to_agency_id=None, to_service=None, message="a report is missing",
                    details={}, now=NOW)
        alert_sync.feed(conn, j.household_id, j.child_id, "test-alert:c-406", "alert")
        alert_sync.feed(conn, j.household_id, j.child_id, "test-alert:c-406", "alert_resolved")
    position, newest = lag(store)
    assert newest == position + 2
    step = follower.step(NOW + timedelta(seconds=1))
    assert step.held and step.read == 0 and step.position == newest
    assert lag(store) == (newest, newest)  # an operator's lag gauge is back to zero
    assert count(store, share_decisions) == decided  # nothing decided for an alert
