"""The timeline under the read policy with the household's facts read on the page's own connection gives
exactly the answer of the facts read apart: every reader, filters and pages (including pages that read on
past a sibling's hidden entries). Real SQLite and PostgreSQL, no broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hub.db.store import Store
from hub.demo.journey import report_not_sent_journey
from hub.governance.auth import Principal
from hub.sharing.policy_timeline import read_timeline
from hub.sharing.visibility import ReadView, narrowing
from hub.stream import readmodel
from tests.sharing.sharing_support import Feeder

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HH = "hh-971"


@pytest.fixture
def store(db_url: str) -> Store:
    s = Store.open(db_url)
    feeder = Feeder(s, NOW)
    for seed, child in ((971, "c-971"), (972, "c-972")):  # two siblings, each with their own record
        j = report_not_sent_journey(NOW - timedelta(days=seed - 971), seed=seed, child_id=child, household_id=HH)
        feeder.feed(j.before_consent + (j.consent if seed == 971 else []), NOW)
    return s


def walk(read: Any, **filters: Any) -> list[list[dict[str, Any]]]:
    pages, cursor = [], None
    while True:
        rows, cursor = read(cursor=cursor, limit=2, **filters)
        pages.append(rows)
        if not cursor:
            return pages


READERS = [Principal("cc-1", "coordinator"), Principal("p-1", "parent", household=HH),
           Principal("yp-1", "young_person", household=HH, member="c-971"),
           Principal("p-9", "parent", household="hh-other"), Principal("ig-1", "ig_officer"),
           Principal("ig-2", "ig_officer", reason="investigating complaint IG-2291"), None]
FILTERS: list[dict[str, Any]] = [{}, {"child_id": "c-972"}, {"sector": "health"}, {"kind": "ReportIssued"},
                                 {"since": NOW - timedelta(days=30), "until": NOW}]


@pytest.mark.parametrize("who", READERS, ids=lambda p: f"{p.role}-{p.subject}" if p else "nobody")
def test_one_connection_reads_what_two_did(store: Store, who: Principal | None) -> None:
    def apart(**kw: Any) -> tuple[list[dict[str, Any]], str | None]:
        view = ReadView.load(store, who, [HH])
        return readmodel.timeline(store, HH, view=view.entry_view(HH, kw.get("kind")),
                                  only_children=narrowing(view, HH), **kw)

    def folded(**kw: Any) -> tuple[list[dict[str, Any]], str | None]:
        return read_timeline(store, who, HH, **kw)

    seen = 0
    for filters in FILTERS:
        expected = walk(apart, **filters)
        assert walk(folded, **filters) == expected, filters
        seen += sum(map(len, expected))
    if who is not None and who.role in ("coordinator", "parent") and who.household in (None, HH):
        assert seen  # the comparison is about entries, not two empty answers
    if who is not None and who.role == "young_person":  # her brother's record is hidden, pages still full
        assert all(e["child_id"] == "c-971" for page in walk(folded) for e in page)
