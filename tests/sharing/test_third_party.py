"""An entry that mentions someone other than the child (``third_party`` on the record: a parent's health, by
relationship only) is kept from the family by the read policy (``READ-third-party``) in their reads and in
the copy the hub puts in their view, while the paediatrician it is shared with gets it whole, marked.
Real SQLite and PostgreSQL, no broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hub.core.events import InboundEvent
from hub.db.schema import deliveries
from hub.db.store import Store
from hub.demo.journey import ABUHB_PAEDS, CAV_SLT, report_not_sent_journey
from hub.governance.auth import Principal
from hub.sharing.inbox import family_copies
from hub.sharing.visibility import ReadView, copies_for
from hub.stream import readmodel
from tests.sharing.sharing_support import Feeder, deliver, stored_deliveries

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DL = deliveries.c
TITLE = "Family circumstances and mother's health"


@pytest.fixture
def store(db_url: str) -> Store:
    return Store.open(db_url)


def shared(store: Store) -> tuple[str, str]:
    """The SLT report and a second report mentioning the child's mother, consent given, copies delivered."""
    j = report_not_sent_journey(NOW, seed=951, child_id="c-951", household_id="hh-951")
    nhs = next(e.subject for e in j.before_consent if e.record_type == "ReportIssued")
    mentions = InboundEvent(
        record_type="ReportIssued", sector="health", source_system="cav-wcp", source_id="cav-slt-family-951",
        occurred_at=NOW - timedelta(days=8), subject=nhs, category="clinical", mapping="demo@1",
        body={"report_id": "slt-family-951", "service": CAV_SLT, "report_kind": "speech_and_language_therapy",
              "title": TITLE, "document_ref": "cav-docs:slt/7782", "third_party": "parent"})
    Feeder(store, NOW).feed([*j.before_consent, mentions, *j.consent], NOW)
    deliver(store, NOW + timedelta(minutes=1))
    return j.household_id, j.child_id


def payloads(store: Store, child: str, recipient_kind: str) -> dict[str, dict[str, Any]]:
    """The information each share to ``recipient_kind`` carries, by report id (or title where redacted)."""
    rows = stored_deliveries(store, DL.child_id == child, DL.kind == "share", DL.recipient_kind == recipient_kind)
    out = {}
    for r in rows:
        info = json.loads(r["payload"])["information"]
        if info["record_type"] == "ReportIssued":
            out[info.get("report_id") or info["event_id"]] = info
    return out


def test_the_family_neither_reads_nor_holds_a_copy_of_what_it_says_about_another_person(store: Store) -> None:
    hh, child = shared(store)
    parent = ReadView.load(store, Principal("parent-951", "parent", household=hh), [hh])

    entries, _ = readmodel.timeline(store, hh, limit=500, view=parent.entry_view(hh))
    reports = [e for e in entries if e["record_type"] == "ReportIssued"]
    assert len(reports) == 1 and TITLE not in json.dumps(entries, default=str)  # the SLT report only
    copies = copies_for(parent, hh, family_copies(store, hh))
    assert TITLE not in json.dumps(copies, default=str)

    family = payloads(store, child, "family")
    assert f"slt-{child}" in family  # the ordinary report's copy is whole
    (redacted,) = [i for i in family.values() if i.get("third_party")]
    assert redacted["visibility"] == "redacted" and redacted["reason_code"] == "READ-third-party"
    assert "title" not in redacted and "document_ref" not in redacted and "report_id" not in redacted
    assert redacted["third_party"] == "parent"  # a relationship, never a name


def test_the_paediatrician_gets_the_report_whole_and_told_it_mentions_a_parent(store: Store) -> None:
    _, child = shared(store)
    paediatrics = payloads(store, child, "agency_professional")
    report = paediatrics["slt-family-951"]
    assert report["title"] == TITLE and report["third_party"] == "parent"
    assert report["producer"]["agency_id"] == CAV_SLT["agency_id"] != ABUHB_PAEDS["agency_id"]
    assert "third_party" not in paediatrics[f"slt-{child}"]


def test_an_ig_officer_investigating_reads_it_and_a_sibling_does_not(store: Store) -> None:
    hh, _ = shared(store)
    ig = ReadView.load(store, Principal("ig-1", "ig_officer", reason="investigating complaint IG-2291"), [hh])
    sibling = ReadView.load(store, Principal("yp-952", "young_person", household=hh, member="c-952"), [hh])

    seen, _ = readmodel.timeline(store, hh, limit=500, view=ig.entry_view(hh))
    assert TITLE in json.dumps(seen, default=str)  # the entry is there, for those entitled to it
    assert all("third_party" not in e for e in seen)  # the fact the policy decided on is not shown as such
    hidden, _ = readmodel.timeline(store, hh, limit=500, view=sibling.entry_view(hh))
    assert hidden == []
