"""The agency inbox beside the agency's webhook, on real SQLite and PostgreSQL.

An agency with a webhook receives its shares there (into its own system); its staff may also read the
inbox at any moment. Reading the inbox must not take a share away from the webhook: the share is shown
as on its way and is still POSTed. An agency without a webhook receives its shares by reading the inbox.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hub.db.schema import deliveries
from hub.db.store import Store
from hub.demo.journey import ABUHB_PAEDS, report_not_sent_journey
from hub.sharing import delivery
from hub.sharing.inbox import inbox
from tests.sharing.sharing_support import Feeder, Webhook, deliver, stored_deliveries
from tests.support import key_queries

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PAEDS = ABUHB_PAEDS["agency_id"]


@pytest.fixture
def store(db_url: str) -> Store:
    return Store.open(db_url)


def paediatric_share(store: Store, report_id: str) -> dict[str, Any]:
    found = [d for d in stored_deliveries(store, deliveries.c.kind == "share")
             if d["service"] == ABUHB_PAEDS["service_name"]
             and json.loads(d["payload"])["information"].get("report_id") == report_id]
    assert len(found) == 1, found
    return found[0]


def consented_report(store: Store, seed: int, child: str) -> tuple[Feeder, str, datetime]:
    """A report withheld, then the family's consent: the share to paediatrics is queued (not yet delivered)."""
    feeder = Feeder(store, NOW)
    j = report_not_sent_journey(NOW, seed=seed, child_id=child, household_id=f"hh-{child}")
    feeder.feed(j.before_consent, NOW)
    later = NOW + timedelta(hours=1)
    assert feeder.feed(j.consent, later).queued >= 1
    report = f"slt-{child}"
    assert paediatric_share(store, report)["state"] == "queued"
    return feeder, report, later


def test_reading_the_inbox_leaves_a_share_on_its_way_to_the_agencys_webhook(store: Store) -> None:
    hook = Webhook()
    try:
        delivery.set_webhook(store, PAEDS, hook.url, "s3cret-shared")
        _feeder, report, later = consented_report(store, 321, "child-hook")
        share = paediatric_share(store, report)

        items, _ = inbox(store, PAEDS, limit=500, now=later)
        (shown,) = [i for i in items if i["delivery_id"] == share["delivery_id"]]
        assert shown["state"] == "queued" and shown["channel"] is None  # seen, still on its way
        assert paediatric_share(store, report)["state"] == "queued"

        deliver(store, later + timedelta(seconds=1))
        posted = [r for r in hook.requests if r["headers"]["Idempotency-Key"] == share["delivery_id"]]
        assert len(posted) == 1, "the share reached the agency's system although its inbox was read first"
        after = paediatric_share(store, report)
        assert (after["state"], after["channel"]) == ("delivered", "webhook")
    finally:
        hook.close()


def test_an_agency_without_a_webhook_receives_a_share_by_reading_its_inbox(store: Store) -> None:
    _feeder, report, later = consented_report(store, 322, "child-inbox")
    share = paediatric_share(store, report)

    items, _ = inbox(store, PAEDS, limit=500, now=later)
    (read,) = [i for i in items if i["delivery_id"] == share["delivery_id"]]
    assert (read["state"], read["channel"]) == ("delivered", "inbox")
    deliver(store, later + timedelta(seconds=1))  # nothing left for the deliverer to do with it
    after = paediatric_share(store, report)
    assert (after["state"], after["channel"], after["attempts"]) == ("delivered", "inbox", 0)


def test_a_delivery_pass_and_an_inbox_page_open_many_childrens_payloads_with_one_key_query(db_url: str) -> None:
    """A process whose key cache is cold (another process sealed the payloads) asks the key vault for the children
    of a delivery pass once to open what it sends and once in the transaction that records what was sent, and
    once for those of an inbox page: not once a child. Every payload opens."""
    writer = Store.open(db_url)
    children = [f"c-kq-{n}" for n in range(6)]
    for n, child in enumerate(children):
        consented_report(writer, 950 + n, child)
    reader = Store.open(db_url)  # another process: nothing cached
    with key_queries(reader) as asked:
        stats = deliver(reader, NOW + timedelta(hours=2))
    assert stats.to_inbox >= len(children) and len(asked) == 2, (stats, asked)
    reader = Store.open(db_url)
    with key_queries(reader) as asked:
        page, _next = inbox(reader, PAEDS, limit=100)
    assert len(asked) == 1
    assert {item["content"]["information"].get("report_id") for item in page} >= {f"slt-{c}" for c in children}
