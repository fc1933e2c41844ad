"""`hub deliver` (hub/runtime/deliverer.py): deliveries, audit trail, escalation and the readiness sweep in a
process of their own. Real SQLite and PostgreSQL, a real local HTTP endpoint as the agency's webhook, real
`hub deliver` processes; decisions come from the sharing step exactly as the worker makes them."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import sqlalchemy as sa

from hub.core.jobs import Runner
from hub.core.settings import Settings
from hub.db.lease import CHORES
from hub.db.schema import audit_cursors, audit_log, deliveries, share_decisions, stream_cursors
from hub.db.store import Store
from hub.demo.journey import ABUHB_PAEDS, report_not_sent_journey
from hub.kafka.broker import free_port
from hub.runtime import sharing_jobs as runtime
from hub.runtime.deliverer import Deliverer
from hub.runtime.placement import worker_jobs
from hub.runtime.stack import Stack
from hub.sharing import delivery
from hub.sharing.alerts import list_alerts
from hub.stream import projection
from tests.sharing.sharing_support import Feeder, Webhook
from tests.support import hub_env, keys_of, spawn, stop, wait_until

SECRET = "paeds-shared-secret-0123"
T = TypeVar("T")


@pytest.fixture
def store(db_url: str) -> Store:
    return Store.open(db_url)


@pytest.fixture
def hook() -> Iterator[Webhook]:
    endpoint = Webhook(delay=0.02)  # an agency endpoint that takes a moment to answer
    yield endpoint
    endpoint.close()


def count(store: Store, q: Any) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(q).scalar_one())


def audited_decisions(store: Store) -> int:
    return count(store, sa.select(sa.func.count()).select_from(audit_log).where(
        audit_log.c.actor == "hub-sharing", audit_log.c.action.in_(("share", "withhold", "hold", "override"))))


def decisions(store: Store) -> int:
    return count(store, sa.select(sa.func.count()).select_from(share_decisions))


def to_paediatrics(store: Store) -> list[dict[str, Any]]:
    """The deliveries bound for the webhook (the paediatric service's agency)."""
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(deliveries).where(
            deliveries.c.agency_id == ABUHB_PAEDS["agency_id"], deliveries.c.state != "withheld"))]


def queue_shares(store: Store, children: int, now: datetime, seed: int) -> int:
    """Enrol ``children`` journeys with consent: their reports are decided and queued; how many go to the webhook."""
    feeder = Feeder(store, now)
    events = []
    for i in range(children):
        j = report_not_sent_journey(now, seed=seed + i, child_id=f"c-{seed + i}", household_id=f"hh-{seed + i}")
        events += j.before_consent + j.consent
    feeder.feed(events, now)
    queued = to_paediatrics(store)
    assert queued and {r["state"] for r in queued} == {"queued"}
    return len(queued)


async def until(predicate: Callable[[], T], what: str, timeout: float = 30) -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = await asyncio.to_thread(predicate)
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {got!r})")
        await asyncio.sleep(0.05)


def exactly_once(store: Store, hook: Webhook, expected: int) -> None:
    keys = [q["headers"]["Idempotency-Key"] for q in hook.requests]
    rows = to_paediatrics(store)
    assert len(keys) == len(set(keys)) == expected, "every share at the webhook once"
    assert set(keys) == {r["delivery_id"] for r in rows}
    assert {(r["state"], r["channel"], r["attempts"]) for r in rows} == {("delivered", "webhook", 1)}, \
        [r["last_error"] for r in rows]
    for q in hook.requests:
        assert delivery.verify(SECRET, q["body"], q["headers"], now=q["at"])


def chores_owner(store: Store) -> str | None:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(stream_cursors.c.owner).where(stream_cursors.c.name == CHORES)).scalar()


def test_a_deliverer_does_everything_the_worker_timer_did(store: Store, hook: Webhook,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_SHARING_ACK_HOURS", "0")  # every delivered share is overdue at once
    monkeypatch.setenv("HUB_SHARING_READINESS_INTERVAL", "0")  # sweep on every chores pass
    now = datetime.now(UTC).replace(microsecond=0)
    j = report_not_sent_journey(now, seed=801, child_id="c-801", household_id="hh-801")
    feeder = Feeder(store, now)
    delivery.set_webhook(store, ABUHB_PAEDS["agency_id"], hook.url, SECRET)

    async def scenario() -> None:
        async with httpx.AsyncClient() as client:
            d = Deliverer(store, client, owner="deliverer-a", poll=0.01, chores_every=0.05, escalate_every=0.05)
            running = asyncio.create_task(d.run())
            await asyncio.to_thread(feeder.feed, j.before_consent, now)  # the report is withheld
            await until(lambda: audited_decisions(store) == decisions(store) > 0, "the decisions audited")
            (alert,) = await until(lambda: list_alerts(store, household_id=j.household_id, kind="readiness"),
                                   "the coordinator's readiness alert")
            assert "ask the family for consent" in alert["message"]
            assert d.probe("/healthz")[0] == 200 and d.probe("/readyz")[0] == 200  # type: ignore[index]

            await asyncio.to_thread(feeder.feed, j.consent, now + timedelta(seconds=1))  # consent: re-decided
            await until(lambda: len(hook.requests) >= 2, "the report and the assessment at the webhook")
            await until(lambda: {r["state"] for r in to_paediatrics(store)} == {"delivered"}, "receipts")
            await until(lambda: len(list_alerts(store, household_id=j.household_id, kind="ack_overdue")) == 2,
                        "unacknowledged shares escalated")
            await until(lambda: audited_decisions(store) == decisions(store), "the new decisions audited")
            assert chores_owner(store) == "deliverer-a"
            d.stop()
            await asyncio.wait_for(running, 15)
            assert not client.is_closed  # an injected client is its owner's to close
            assert d.probe("/readyz")[0] == 503  # type: ignore[index]

    asyncio.run(scenario())
    exactly_once(store, hook, 2)
    assert chores_owner(store) is None  # given up on the way out: another deliverer takes over at once


def test_two_deliverers_deliver_every_share_exactly_once(db_url: str, hook: Webhook) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    first = Store.open(db_url)
    expected = queue_shares(first, 15, now, seed=820)
    delivery.set_webhook(first, ABUHB_PAEDS["agency_id"], hook.url, SECRET)
    second = Store.open(db_url, migrate_schema=False)  # a second process: its own connections

    async def scenario() -> tuple[Deliverer, Deliverer]:
        async with httpx.AsyncClient() as c1, httpx.AsyncClient() as c2:
            a = Deliverer(first, c1, owner="deliverer-a", poll=0.01, limit=4)
            b = Deliverer(second, c2, owner="deliverer-b", poll=0.01, limit=4)
            running = [asyncio.create_task(a.run()), asyncio.create_task(b.run())]
            await until(lambda: len(hook.requests) >= expected, f"{expected} shares at the webhook")
            await until(lambda: {r["state"] for r in to_paediatrics(first)} == {"delivered"}, "receipts")
            await asyncio.sleep(0.3)  # nothing more arrives
            a.stop()
            b.stop()
            await asyncio.wait_for(asyncio.gather(*running), 15)
        return a, b

    a, b = asyncio.run(scenario())
    exactly_once(first, hook, expected)
    assert a.totals.delivered > 0 and b.totals.delivered > 0, "both took part"
    second.engine.dispose()


def test_a_database_failure_is_logged_and_the_loop_carries_on(store: Store, hook: Webhook) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    expected = queue_shares(store, 1, now, seed=840)
    delivery.set_webhook(store, ABUHB_PAEDS["agency_id"], hook.url, SECRET)

    def rename(old: str, new: str) -> None:
        with store.engine.begin() as conn:
            conn.execute(sa.text(f"alter table {old} rename to {new}"))

    rename("deliveries", "deliveries_away")  # every delivery query now fails, as with the database away

    async def scenario() -> None:
        async with httpx.AsyncClient() as client:
            d = Deliverer(store, client, poll=0.01)
            running = asyncio.create_task(d.run())
            await until(lambda: d.passes >= 1 and not d.healthy, "a failed pass")
            assert d.probe("/readyz")[0] == 503 and d.probe("/healthz")[0] == 200  # type: ignore[index]
            assert not running.done()
            await asyncio.to_thread(rename, "deliveries_away", "deliveries")  # the database is back
            await until(lambda: len(hook.requests) >= expected, "the shares after the failure", timeout=20)
            await until(lambda: d.healthy, "ready again")
            d.stop()
            await asyncio.wait_for(running, 15)

    asyncio.run(scenario())
    exactly_once(store, hook, expected)


@pytest.mark.parametrize("deliver", [False, True], ids=["process-mode", "worker-mode"])
def test_a_worker_in_process_mode_decides_and_leaves_delivery_and_audit_alone(store: Store, hook: Webhook,
                                                                              deliver: bool) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    j = report_not_sent_journey(now, seed=850, child_id="c-850", household_id="hh-850")
    feeder = Feeder(store, now)
    projection.apply(store, feeder.decode(j.before_consent + j.consent))  # what the stream worker projected
    delivery.set_webhook(store, ABUHB_PAEDS["agency_id"], hook.url, SECRET)

    async def scenario() -> None:
        wake = asyncio.Event()
        wake.set()
        jobs = Runner(worker_jobs(store, "worker-1", deliver=deliver, projected=wake))  # as the worker hosts them
        following = asyncio.create_task(jobs.run())
        try:
            await until(lambda: len(to_paediatrics(store)) == 2, "the shares decided")
            if deliver:
                await until(lambda: len(hook.requests) == 2, "the worker's own delivery pass")
                await until(lambda: {r["state"] for r in to_paediatrics(store)} == {"delivered"}, "the receipts")
            else:
                await asyncio.sleep(1.0)  # what a delivering worker would have sent by now
        finally:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)  # the jobs close their HTTP client

    asyncio.run(scenario())
    if deliver:
        assert audited_decisions(store) == decisions(store) > 0
        exactly_once(store, hook, 2)
    else:
        assert hook.requests == [] and audited_decisions(store) == decisions(store) > 0  # audited as decided
        assert {r["state"] for r in to_paediatrics(store)} == {"queued"}


@pytest.mark.parametrize(("mode", "worker_delivers", "stack_runs_deliverer"),
                         [("auto", True, True), ("worker", True, False), ("process", False, True)])
def test_delivery_mode_decides_who_delivers(tmp_path: Path, mode: str, worker_delivers: bool,
                                            stack_runs_deliverer: bool) -> None:
    settings = Settings(delivery_mode=mode, data_dir=tmp_path)  # type: ignore[arg-type]
    assert settings.worker_delivers is worker_delivers  # a bare `hub worker` with these settings
    assert settings.stack_runs_deliverer is stack_runs_deliverer  # `hub up`
    env = Stack(settings).worker_env()  # what `hub up` gives its workers
    if stack_runs_deliverer:
        assert env["HUB_DELIVERY_MODE"] == "process"
        assert not Settings(delivery_mode=env["HUB_DELIVERY_MODE"]).worker_delivers  # type: ignore[arg-type]


def test_hub_deliver_processes_share_the_work_and_stop_cleanly(db_url: str, tmp_path: Path, hook: Webhook) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    store = keys_of(Store.open(db_url), tmp_path / "data")  # the deliverers open the payloads it seals
    expected = queue_shares(store, 10, now, seed=860)
    delivery.set_webhook(store, ABUHB_PAEDS["agency_id"], hook.url, SECRET)
    env = hub_env(database_url=db_url, data_dir=tmp_path / "data", delivery_mode="process")
    port = free_port()
    procs = [spawn(["deliver", "--interval", "0.02", "--probe-port", str(port)], env, tmp_path / "d1.log"),
             spawn(["deliver", "--interval", "0.02"], env, tmp_path / "d2.log")]
    try:
        wait_until(lambda: len(hook.requests) >= expected, 60, f"{expected} shares at the webhook")
        wait_until(lambda: {r["state"] for r in to_paediatrics(store)} == {"delivered"}, 30, "receipts")
        probe = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            try:
                return httpx.get(f"{probe}/healthz", timeout=5).json()["status"] == "ok"
            except httpx.HTTPError:
                return False  # the other process may have delivered everything before this one listened

        wait_until(answers, 20, "the probe port")
        assert httpx.get(f"{probe}/readyz", timeout=5).status_code == 200
        assert httpx.get(f"{probe}/metrics", timeout=5).status_code == 404
        owner = wait_until(lambda: chores_owner(store), 10, "one deliverer doing the chores")
        assert owner.endswith(tuple(f"-{p.pid}" for p in procs))
        time.sleep(0.3)
    finally:
        codes = [stop(p, signal.SIGTERM, timeout=20) for p in procs]
    assert codes == [0, 0]
    logs = [(tmp_path / name).read_text() for name in ("d1.log", "d2.log")]
    assert all("sharing.deliverer_stopped" in text for text in logs), logs
    assert all("Traceback" not in text for text in logs), logs
    exactly_once(store, hook, expected)
    assert chores_owner(store) is None
    delivered = sum(json.loads(line)["delivered"] for text in logs for line in text.splitlines()
                    if "sharing.deliverer_stopped" in line)
    assert delivered >= expected
    store.engine.dispose()


def test_queued_shares_nobody_takes_up_show_as_overdue(store: Store, hook: Webhook) -> None:
    """Workers in process mode with no deliverer running send nothing: the metric an operator alerts
    on (``hub_deliveries_overdue``) counts the shares left waiting, and drops to 0 once one runs."""
    now = datetime.now(UTC)
    j = report_not_sent_journey(now, seed=4711, child_id="child-overdue", household_id="hh-overdue")
    Feeder(store, now).feed(j.before_consent + j.consent, now)
    queued, overdue = delivery.backlog(store, now + timedelta(seconds=5))
    assert queued > 0 and overdue == 0  # just decided: due, not yet overdue
    assert delivery.backlog(store, now + timedelta(minutes=2)) == (queued, queued)
    delivery.set_webhook(store, ABUHB_PAEDS["agency_id"], hook.url, SECRET)

    async def deliver() -> None:
        async with httpx.AsyncClient() as client:
            await delivery.deliver_due(store, client, now + timedelta(minutes=2))

    asyncio.run(deliver())
    assert delivery.backlog(store, now + timedelta(minutes=2)) == (0, 0)


def test_rows_an_earlier_release_left_uncopied_are_audited_once_then_the_catch_up_stops(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """An earlier release copied decisions into the audit log later, from a cursor: what it had not copied
    when the deployment upgraded is copied by the chores job, once; what was audited with its change is
    not copied again; then the cursors go and the job stops looking."""
    from hub.sharing import audit_trail

    now = datetime.now(UTC)
    j = report_not_sent_journey(now, seed=4712, child_id="child-audit-once", household_id="hh-audit-once")
    with monkeypatch.context() as m:  # the earlier release: decisions written without their records
        m.setattr(audit_trail, "write", lambda conn, entries: 0)
        Feeder(store, now).feed(j.before_consent, now)
    old = decisions(store)
    assert old > 0 and audited_decisions(store) == 0
    with store.engine.begin() as conn:  # where its copying job had got to: nothing of these copied yet
        conn.execute(sa.insert(audit_cursors), [{"name": n, "position": f"{(now - timedelta(days=1)).isoformat()}|"}
                                                for n in audit_trail.CURSORS])
    Feeder(store, now).feed(j.consent, now + timedelta(seconds=1))  # this release: audited with the change
    assert decisions(store) > old and audited_decisions(store) == decisions(store) - old

    job = runtime.AuditCatchUpJob(store, every=1.0, batch=2)
    assert asyncio.run(job.run_once()) == 0.0  # a full batch: more at once
    for _ in range(100):  # until nothing is left after any cursor: then the cursors go
        asyncio.run(job.run_once())
        if job.done:
            break
    assert job.done and count(store, sa.select(sa.func.count()).select_from(audit_cursors)) == 0
    with store.engine.connect() as conn:
        refs = [r[0] for r in conn.execute(sa.select(audit_log.c.data_ref).where(
            audit_log.c.action.in_(("share", "withhold", "hold", "override"))))]
        ids = {r[0] for r in conn.execute(sa.select(share_decisions.c.decision_id))}
    assert sorted(refs) == sorted(ids)  # every decision exactly once
    assert audit_trail.catch_up(store) == 0
    from hub.governance.audit import AuditLog
    assert AuditLog(store).verify().ok
