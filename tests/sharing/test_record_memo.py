"""The sharing step's memo of opened records: what it answers is what reading the database answers, pass after
pass, through new versions, corrections, entries entered in error, links undone and moved, and erasure."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hub.core.settings import Settings
from hub.db.keyvault import SqlKeyVault, load_keyring
from hub.db.store import Store
from hub.demo.journey import report_not_sent_journey
from hub.governance.erasure import Erasure, MemberRef
from hub.sharing.follower import Follower
from hub.sharing.record_memo import RecordMemo, child_records
from hub.stream import projection
from tests.sharing.sharing_support import KEY, Feeder

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(db_url: str) -> Store:
    return Store.open(db_url)


def entry(event_id: str, n: int = 0) -> dict[str, Any]:
    return {"event_id": event_id, "record_type": "ReportIssued", "occurred_at": NOW, "record": {"n": n}}


# ------------------------------------------------------------------------------------------ the memo alone

def test_an_entry_is_answered_only_at_the_version_it_was_opened_at() -> None:
    memo = RecordMemo(10)
    memo.put("e1", 1, entry("e1", 1))
    assert memo.get("e1", 1) == entry("e1", 1)
    assert memo.get("e1", 2) is None  # a new version is read again
    assert memo.get("e2", 1) is None
    assert (memo.hits, memo.misses) == (1, 2)


def test_the_memo_keeps_at_most_its_bound_and_lets_the_least_recently_used_go_first() -> None:
    memo = RecordMemo(3)
    for i in range(3):
        memo.put(f"e{i}", 1, entry(f"e{i}", i))
    assert memo.get("e0", 1) is not None  # e0 used again: e1 is now the oldest
    memo.put("e3", 1, entry("e3", 3))
    assert len(memo) == 3
    assert memo.get("e1", 1) is None
    assert all(memo.get(f"e{i}", 1) is not None for i in (0, 2, 3))


def test_a_memo_of_no_records_keeps_none_and_forget_and_clear_let_entries_go() -> None:
    none = RecordMemo(0)
    none.put("e1", 1, entry("e1"))
    assert len(none) == 0 and none.get("e1", 1) is None
    memo = RecordMemo()
    for i in range(4):
        memo.put(f"e{i}", 1, entry(f"e{i}"))
    memo.forget(["e0", "e1", "absent"])
    assert len(memo) == 2 and memo.get("e0", 1) is None
    memo.clear()
    assert len(memo) == 0


# ------------------------------------------------------------------ through the projection, as the step reads

def _same(store: Store, homes: list[tuple[str, str]], memo: RecordMemo) -> dict[tuple[str, str], list[Any]]:
    """Read with the memo and without it: the same answer, in the same order."""
    with_memo = child_records(store, homes, memo)
    assert with_memo == child_records(store, homes)
    return with_memo


def test_the_memo_answers_like_the_database_pass_after_pass(store: Store) -> None:
    feeder = Feeder(store, NOW)
    a = report_not_sent_journey(NOW, seed=811, child_id="c-811", household_id="hh-811")
    b = report_not_sent_journey(NOW, seed=812, child_id="c-812", household_id="hh-812")
    homes = [(a.household_id, a.child_id), (b.household_id, b.child_id)]
    projection.apply(store, feeder.decode(a.before_consent + b.before_consent))
    memo = RecordMemo()

    first = _same(store, homes, memo)
    assert [len(first[h]) for h in homes] == [5, 5]  # referrals, assessment, report, appointment
    assert memo.hits == 0 and len(memo) == 10
    second = _same(store, homes, memo)
    assert memo.hits == 10  # nothing changed: every entry answered from the memo
    assert second == first

    # a corrected report (version 2, new title and an earlier time), and an entry entered in error
    (report,) = [e for e in a.before_consent if e.record_type == "ReportIssued"]
    (assessment,) = [e for e in a.before_consent if e.record_type == "AssessmentCompleted"]
    corrected = replace(report, source_version=2, occurred_at=NOW - timedelta(days=60),
                        body={**report.body, "title": "Speech and language therapy report (corrected)"})
    in_error = replace(assessment, source_version=2, status="entered_in_error")
    projection.apply(store, feeder.decode([corrected, in_error]))
    third = _same(store, homes, memo)
    mine = third[homes[0]]
    assert [e["record"]["title"] for e in mine if e["record_type"] == "ReportIssued"] == [
        "Speech and language therapy report (corrected)"]
    assert mine[0]["record_type"] == "ReportIssued"  # in its new place in event time
    assert "AssessmentCompleted" not in {e["record_type"] for e in mine}
    assert third[homes[1]] == first[homes[1]]

    # b's NHS-number link undone, then made to a's child: b's entries move to a's record
    (b_link,) = [e for e in b.before_consent if e.record_type == "IdentityLinked" and e.subject.system == "nhs-number"]
    projection.apply(store, feeder.decode([replace(b_link, source_version=2, occurred_at=NOW,
                                                   body={**b_link.body, "action": "unlink", "reason": "wrong child"})]))
    assert _same(store, homes, memo)[homes[1]] == []
    projection.apply(store, feeder.decode([replace(b_link, source_version=3, occurred_at=NOW + timedelta(minutes=1),
                                                   body={**b_link.body, "child_id": a.child_id,
                                                         "household_id": a.household_id})]))
    moved = _same(store, homes, memo)
    assert len(moved[homes[0]]) == len(mine) + 5 and moved[homes[1]] == []


def test_a_follower_lets_its_memo_go_when_another_process_takes_the_cursor(store: Store) -> None:
    feeder = Feeder(store, NOW)
    j = report_not_sent_journey(NOW, seed=813, child_id="c-813", household_id="hh-813")
    projection.apply(store, feeder.decode(j.before_consent))
    first = Follower(store, "worker-a")
    assert first.step(NOW).held and len(first.memo) > 0
    first.release()
    assert len(first.memo) == 0
    second = Follower(store, "worker-b")
    assert second.step(NOW + timedelta(seconds=1)).held
    projection.apply(store, feeder.decode(j.consent))
    assert second.step(NOW + timedelta(seconds=2)).result.queued > 0
    assert len(second.memo) > 0


def test_the_memo_starts_again_empty_when_it_is_older_than_its_age() -> None:
    memo = RecordMemo(10, max_age=0.0)
    memo.check(0)
    memo.put("e1", 1, entry("e1"))
    memo.check(0)  # nothing erased, but older than 0 s
    assert len(memo) == 0
    kept = RecordMemo(10)
    kept.check(0)
    kept.put("e1", 1, entry("e1"))
    kept.check(0)
    assert len(kept) == 1
    kept.check(1)  # an erasure since
    assert len(kept) == 0


def test_nothing_of_an_erased_child_is_kept_after_the_next_read_of_any_child(
        store: Store, tmp_path: Path) -> None:
    feeder = Feeder(store, NOW)
    a = report_not_sent_journey(NOW, seed=814, child_id="c-814", household_id="hh-814")
    b = report_not_sent_journey(NOW, seed=815, child_id="c-815", household_id="hh-815")
    projection.apply(store, feeder.decode(a.before_consent + b.before_consent))
    memo = RecordMemo()
    read = child_records(store, [(a.household_id, a.child_id), (b.household_id, b.child_id)], memo)
    a_ids = {e["event_id"] for e in read[(a.household_id, a.child_id)]}
    assert a_ids and len(memo) == 10
    settings = Settings(data_dir=tmp_path / "data", pseudonym_key=KEY)
    Erasure(store, SqlKeyVault(store, load_keyring(settings)), feeder.pseudonymise).erase(
        MemberRef(a.household_id, a.child_id), reason="right to erasure request, ticket 814", actor="ig-1")
    child_records(store, [(b.household_id, b.child_id)], memo)  # a pass that touches only b
    assert len(memo) == 5 and not any(memo.get(i, 1) for i in a_ids)
