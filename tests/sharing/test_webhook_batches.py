"""Deliveries batched per recipient where the recipient's webhook accepts it (hub/sharing/batched.py).

Real SQLite and PostgreSQL, real local HTTP endpoints as the agencies' systems; the shares come from the
sharing step exactly as the worker decides them (reports permitted within a health board, rule R2, or
resting on the family's consent).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hub.core.errors import ConfigError
from hub.core.events import InboundEvent, SubjectRef
from hub.db.schema import agency_webhooks, deliveries
from hub.db.store import Store
from hub.demo.identifiers import nhs_number
from hub.demo.journey import ABUHB_PAEDS, report_not_sent_journey
from hub.sharing import batched, delivery, webhooks
from tests.sharing.sharing_support import Feeder, Webhook, deliver, stored_deliveries

A, B = "7A6", "7A4"  # two health boards, each with a webhook of its own
SECRETS = {A: webhooks.new_secret(), B: webhooks.new_secret()}


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store.open(db_url)
    yield s
    s.engine.dispose()


@pytest.fixture
def hook() -> Iterator[Webhook]:
    endpoint = Webhook()
    yield endpoint
    endpoint.close()


@pytest.fixture
def other_hook() -> Iterator[Webhook]:
    endpoint = Webhook()
    yield endpoint
    endpoint.close()


def service(agency: str, code: str) -> dict[str, Any]:
    return {"agency_id": agency, "agency_name": None, "sector": "health", "service_code": code,
            "service_name": f"{code} {agency}"}


class Agencies:
    """Children with a paediatric appointment in a board; each report its SLT service issues there is shared
    with the paediatric service (one queued share each, due at the time it was decided)."""

    def __init__(self, store: Store, now: datetime) -> None:
        self.store, self.now, self.feeder = store, now, Feeder(store, now)
        self.children: dict[str, SubjectRef] = {}
        self.reports = 0

    def child(self, agency: str) -> SubjectRef:
        if agency not in self.children:
            n = len(self.children)
            ident = SubjectRef("nhs-number", nhs_number(7100 + n))
            self.feeder.feed([
                InboundEvent(record_type="IdentityLinked", sector="hub", source_system="t-enrol", source_id=f"l-{n}",
                             occurred_at=self.now - timedelta(days=30), subject=ident,
                             body={"action": "link", "child_id": f"batch-child-{n}", "household_id": f"batch-hh-{n}",
                                   "identifier_system": "nhs-number"}),
                InboundEvent(record_type="AppointmentBooked", sector="health", source_system="t-pas",
                             source_id=f"a-{n}", occurred_at=self.now - timedelta(days=20), subject=ident,
                             body={"service": service(agency, "PAED"), "start": self.now + timedelta(days=10)})],
                self.now)
            self.children[agency] = ident
        return self.children[agency]

    def report(self, agency: str) -> str:
        """One report shared with ``agency``, decided (and due) a millisecond after the one before."""
        self.reports += 1
        rid = f"r-{self.reports:03d}-{agency}"
        decided = self.now + timedelta(milliseconds=self.reports)
        self.feeder.feed([InboundEvent(
            record_type="ReportIssued", sector="health", source_system="t-slt", source_id=rid,
            occurred_at=self.now - timedelta(days=1), subject=self.child(agency), category="clinical",
            body={"report_id": rid, "service": service(agency, "SLT"), "report_kind": "speech_and_language_therapy",
                  "title": "SLT report", "document_ref": f"docs:{rid}"})], decided)
        return rid


def to_agency(store: Store, agency: str) -> list[dict[str, Any]]:
    return stored_deliveries(store, deliveries.c.agency_id == agency, deliveries.c.state != "withheld")


def report_of(row: dict[str, Any]) -> str:
    return str(json.loads(row["payload"])["information"]["report_id"])


def received(hook: Webhook) -> list[dict[str, Any]]:
    """Each POST as the agency got it: headers (lower case), the parsed body and the raw one."""
    return [{"headers": {k.lower(): v for k, v in q["headers"].items()}, "body": json.loads(q["body"]),
             "raw": q["body"], "at": q["at"]} for q in hook.requests]


def test_a_batching_agency_gets_its_shares_in_batches_and_one_without_gets_one_post_each(
        store: Store, hook: Webhook, other_hook: Webhook) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    agencies = Agencies(store, now)
    delivery.set_webhook(store, A, hook.url, SECRETS[A], batch_max=3)
    delivery.set_webhook(store, B, other_hook.url, SECRETS[B])  # batch_max 1: as before
    order = [agencies.report(a) for a in (A, B, A, A, A, B, A, A, A)]  # 7 for A, 2 for B, interleaved
    at = now + timedelta(seconds=1)

    stats = deliver(store, at)

    rows = {r["delivery_id"]: r for r in to_agency(store, A)}
    assert len(rows) == 7
    posts = received(hook)
    assert sorted(len(p["body"]["batch"]) for p in posts) == [1, 3, 3]
    in_order = [r for r in order if r.endswith(A)]
    assert sorted([report_of(rows[e["delivery_id"]]) for e in p["body"]["batch"]] for p in posts) == \
        [in_order[0:3], in_order[3:6], in_order[6:7]]  # claimed order, cut in runs of at most 3
    seen: list[str] = []
    for p in posts:
        h, ids = p["headers"], [e["delivery_id"] for e in p["body"]["batch"]]
        assert h["webhook-id"] == h["idempotency-key"] == batched.batch_id(ids)
        assert h["webhook-id"].startswith("batch_") and h["x-hub-delivery-kind"] == "batch"
        assert webhooks.verify(SECRETS[A], p["raw"], h, now=p["at"])
        assert not webhooks.verify(SECRETS[B], p["raw"], h, now=p["at"])
        assert p["body"]["sent_at"] == at.isoformat()
        for element in p["body"]["batch"]:  # each delivery's body exactly as it would have gone alone
            assert element == json.loads(rows[element["delivery_id"]]["payload"]) | {"sent_at": at.isoformat()}
        seen += ids
    assert sorted(seen) == sorted(rows)  # every share once
    for did, row in rows.items():
        assert (row["state"], row["channel"], row["attempts"]) == ("delivered", "webhook", 1)
        batch = next(p for p in posts if did in {e["delivery_id"] for e in p["body"]["batch"]})
        receipt = json.loads(row["receipt"])
        assert receipt["status"] == 200 and receipt["batch"] == batch["headers"]["webhook-id"]
        assert receipt["batch_size"] == len(batch["body"]["batch"])

    singles = received(other_hook)  # the agency that did not opt in: one POST per share, as before
    b_rows = {r["delivery_id"]: r for r in to_agency(store, B)}
    assert len(singles) == len(b_rows) == 2
    for p in singles:
        h = p["headers"]
        assert h["webhook-id"] == h["idempotency-key"] == p["body"]["delivery_id"] in b_rows
        assert h["x-hub-delivery-kind"] == "share" and "batch" not in p["body"]
        assert p["body"] == json.loads(b_rows[h["webhook-id"]]["payload"]) | {"sent_at": at.isoformat()}
        assert webhooks.verify(SECRETS[B], p["raw"], h, now=p["at"])
    assert {(r["state"], r["attempts"]) for r in b_rows.values()} == {("delivered", 1)}
    assert all("batch" not in json.loads(r["receipt"]) for r in b_rows.values())
    assert stats.retried == stats.failed == 0 and set(rows) | set(b_rows) <= set(stats.delivered_ids)

    deliver(store, at + timedelta(minutes=5))  # nothing is sent twice
    assert len(hook.requests) == 3 and len(other_hook.requests) == 2


def test_a_batch_answered_500_is_retried_whole_after_the_backoff_with_the_same_id(
        store: Store, hook: Webhook) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    agencies = Agencies(store, now)
    delivery.set_webhook(store, A, hook.url, SECRETS[A], batch_max=5)
    for _ in range(4):
        agencies.report(A)
    hook.status = 500
    first = now + timedelta(seconds=1)

    stats = deliver(store, first)

    (failed,) = received(hook)
    bid = failed["headers"]["webhook-id"]
    rows = to_agency(store, A)
    assert len(failed["body"]["batch"]) == 4 and stats.retried == 4
    assert not {r["delivery_id"] for r in rows} & set(stats.delivered_ids)  # (the family's copies are)
    assert {(r["state"], r["attempts"], r["delivered_at"], r["receipt"]) for r in rows} == {("queued", 1, None, None)}
    assert all(r["last_error"].startswith(f"batch {bid}: HTTP 500") for r in rows)
    (due,) = {r["next_attempt_at"] for r in rows}  # the batch falls due again as one
    due = due.replace(tzinfo=UTC) if due.tzinfo is None else due
    assert first + timedelta(seconds=0.9) <= due <= first + timedelta(seconds=2.1)  # HUB_SHARING_RETRY_BASE 2 s

    hook.status = 200
    deliver(store, first + timedelta(milliseconds=500))  # before the backoff: nothing goes
    assert len(hook.requests) == 1
    again = first + timedelta(seconds=10)
    deliver(store, again)

    retried = received(hook)[1]
    assert retried["headers"]["webhook-id"] == retried["headers"]["idempotency-key"] == bid  # the same set
    assert sorted(e["delivery_id"] for e in retried["body"]["batch"]) == \
        sorted(e["delivery_id"] for e in failed["body"]["batch"])
    assert webhooks.verify(SECRETS[A], retried["raw"], retried["headers"], now=retried["at"])
    rows = to_agency(store, A)
    assert {(r["state"], r["attempts"], r["last_error"]) for r in rows} == {("delivered", 2, None)}
    assert {json.loads(r["receipt"])["batch"] for r in rows} == {bid}


def test_a_batch_that_fails_for_good_fails_every_share_in_it_and_alerts_for_each(
        store: Store, hook: Webhook, monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.sharing.alerts import list_alerts

    monkeypatch.setenv("HUB_SHARING_MAX_ATTEMPTS", "1")
    now = datetime.now(UTC).replace(microsecond=0)
    agencies = Agencies(store, now)
    delivery.set_webhook(store, A, hook.url, SECRETS[A], batch_max=5)
    agencies.report(A)
    agencies.report(A)
    hook.status = 503
    stats = deliver(store, now + timedelta(seconds=1))
    rows = to_agency(store, A)
    assert stats.failed == 2 and len(hook.requests) == 1
    assert {(r["state"], r["attempts"]) for r in rows} == {("failed", 1)}
    alerted = {a["details"]["delivery_id"] for a in list_alerts(store, kind="delivery_failed")}
    assert alerted == {r["delivery_id"] for r in rows}


def test_a_share_whose_consent_was_withdrawn_before_the_pass_is_cancelled_and_left_out_of_the_batch(
        store: Store, hook: Webhook) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    j = report_not_sent_journey(now, seed=7301, child_id="child-batch-late", household_id="hh-batch-late")
    agencies = Agencies(store, now)
    agencies.feeder.feed(j.before_consent + j.consent, now)  # two shares resting on the family's consent
    permitted = [agencies.report(A) for _ in range(3)]  # three the board may share without it (rule R2)
    delivery.set_webhook(store, A, hook.url, SECRETS[A], batch_max=10)
    on_consent = [r for r in to_agency(store, A) if r["service"] == ABUHB_PAEDS["service_name"]]
    assert len(on_consent) == 2 and {r["state"] for r in on_consent} == {"queued"}
    with store.engine.begin() as conn:  # withdrawn as the sharing step records it, not yet decided on
        conn.execute(sa.text("update consent_directives set status = 'withdrawn' where directive_id = :d"),
                     {"d": j.directive_id})

    stats = deliver(store, now + timedelta(seconds=1))

    (post,) = received(hook)
    rows = {r["delivery_id"]: r for r in to_agency(store, A)}
    assert sorted(report_of(rows[e["delivery_id"]]) for e in post["body"]["batch"]) == permitted
    assert post["headers"]["webhook-id"] == batched.batch_id(e["delivery_id"] for e in post["body"]["batch"])
    assert stats.cancelled == 2
    for r in on_consent:
        after = rows[r["delivery_id"]]
        assert (after["state"], after["why"], after["attempts"]) == \
            ("cancelled", delivery.WITHDRAWN_BEFORE_DELIVERY, 0)
    assert {rows[e["delivery_id"]]["state"] for e in post["body"]["batch"]} == {"delivered"}


@pytest.mark.parametrize("bad", [0, 501])
def test_a_batch_max_out_of_range_is_refused_by_set_webhook_and_nothing_is_written(store: Store, bad: int) -> None:
    delivery.set_webhook(store, A, "https://abuhb.example/hub", SECRETS[A], batch_max=3)
    with pytest.raises(ConfigError, match=r"agency 7A6: batch_max must be a whole number from 1 to 500"):
        delivery.set_webhook(store, A, "https://elsewhere.example/hub", SECRETS[B], batch_max=bad)
    with pytest.raises(ConfigError, match="batch_max"):
        delivery.set_webhook(store, B, "https://cav.example/hub", SECRETS[B], batch_max=bad)
    with store.engine.connect() as conn:
        kept = [tuple(r) for r in conn.execute(sa.select(agency_webhooks.c.agency_id, agency_webhooks.c.url,
                                                         agency_webhooks.c.secret, agency_webhooks.c.batch_max))]
    assert kept == [(A, "https://abuhb.example/hub", SECRETS[A], 3)]
    assert delivery.load_webhooks(store)[A] == webhooks.Webhook("https://abuhb.example/hub", SECRETS[A], 3)
    assert SECRETS[A] not in repr(delivery.load_webhooks(store)[A])  # the secret stays out of logs


@pytest.mark.parametrize("bad", [0, 501, "3", True])
def test_a_batch_max_out_of_range_in_the_webhooks_file_is_refused_and_nothing_is_sent(
        store: Store, hook: Webhook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: object) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    agencies = Agencies(store, now)
    agencies.report(A)
    hooks_file = tmp_path / "webhooks.json"
    hooks_file.write_text(json.dumps({B: {"url": hook.url, "secret": SECRETS[B]},
                                      A: {"url": hook.url, "secret": SECRETS[A], "batch_max": bad}}))
    monkeypatch.setenv("HUB_WEBHOOKS_FILE", str(hooks_file))
    with pytest.raises(ConfigError, match=r"HUB_WEBHOOKS_FILE, agency 7A6: batch_max must be a whole number"):
        delivery.load_webhooks(store)
    with pytest.raises(ConfigError, match="batch_max"):
        deliver(store, now + timedelta(seconds=1))  # the pass fails (logged, retried) until it is corrected
    assert hook.requests == []
    assert {(r["state"], r["attempts"], r["last_error"]) for r in to_agency(store, A)} == {("queued", 0, None)}
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(agency_webhooks)).scalar_one() == 0

    hooks_file.write_text(json.dumps({A: {"url": hook.url, "secret": SECRETS[A], "batch_max": 2}}))
    assert delivery.load_webhooks(store)[A].batch_max == 2  # corrected: read again


def test_a_batch_for_one_agency_never_carries_another_agencys_delivery(store: Store, hook: Webhook) -> None:
    """Two boards batching, their due rows interleaved, and (the harder case) one shared endpoint: each
    POST carries one board's deliveries only, signed with that board's secret."""
    now = datetime.now(UTC).replace(microsecond=0)
    agencies = Agencies(store, now)
    delivery.set_webhook(store, A, hook.url, SECRETS[A], batch_max=2)
    delivery.set_webhook(store, B, hook.url, SECRETS[B], batch_max=2)
    for _ in range(5):
        agencies.report(A)
        agencies.report(B)

    deliver(store, now + timedelta(seconds=1))

    owner = {r["delivery_id"]: agency for agency in (A, B) for r in to_agency(store, agency)}
    assert len(owner) == 10
    posts = received(hook)
    by_agency: dict[str, list[int]] = {A: [], B: []}
    for p in posts:
        signed_by = [a for a in (A, B) if webhooks.verify(SECRETS[a], p["raw"], p["headers"], now=p["at"])]
        assert len(signed_by) == 1
        assert {owner[e["delivery_id"]] for e in p["body"]["batch"]} == set(signed_by)  # never the other board's
        by_agency[signed_by[0]].append(len(p["body"]["batch"]))
    assert sorted(by_agency[A]) == sorted(by_agency[B]) == [1, 2, 2]
    assert sorted(e["delivery_id"] for p in posts for e in p["body"]["batch"]) == sorted(owner)
    assert {r["state"] for a in (A, B) for r in to_agency(store, a)} == {"delivered"}
