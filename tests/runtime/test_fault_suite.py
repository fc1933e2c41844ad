"""The bounded randomized fault suite: kill -9 of the worker, the deliverer, the broker or the whole `hub up`
at random points while events, consents, withdrawals, links and unlinks flow, on SQLite and PostgreSQL.

Afterwards every accepted event is on its family's timeline exactly once, the agency's webhook (a local
HTTP server) saw every share the hub records as delivered and a withdrawal notice for each one a withdrawn
consent took back, every change has its audit record, and `hub audit verify` passes; then truncating the
trail, deleting its checkpoints or appending a record makes verify fail naming the first bad position.

Bounded for `make test` (a few kills per database). ``HUB_FAULT_SEED`` repeats a run (the seed is in the
failure message), ``HUB_FAULT_ROUNDS`` makes it longer (docs/operations.md, "Fault suite").
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from consent import Directive, DirectiveDecision, Grantor, Purpose, Scope, Sector
from consent.fhir import directive_to_fhir_dict
from hub.db.schema import audit_log
from hub.demo.journey import ABUHB_PAEDS, report_not_sent_journey
from hub.governance.audit import compute_hash
from hub.governance.checkpoint_verify import GRACE
from hub.kafka.broker import free_port
from hub.sharing.ledger.values import MAYBE_SENT
from tests.governance.test_audit_checkpoints import HASHED
from tests.scenarios.running import PAEDIATRICS_SECRET, AgencyEndpoint
from tests.support import bearer, children_of, hub_env, pid_alive, ready, run_hub, spawn, stop, wait_until

pytestmark = pytest.mark.broker

SEED = int(os.environ.get("HUB_FAULT_SEED") or random.SystemRandom().randrange(10**6))
ROUNDS = int(os.environ.get("HUB_FAULT_ROUNDS") or 2)
CHILDREN = 2 + max(0, ROUNDS - 2)  # a longer run has more families
AGENCY = bearer("agency", "abuhb-pas", agency="7A6")
COORDINATOR = bearer("coordinator", "cc-1")


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value.isoformat() if isinstance(value, datetime) else value


class Stack:
    """`hub up` under fire: its processes are killed and it is started again when it died as a whole."""

    def __init__(self, tmp_path: Path, db_url: str, hook: AgencyEndpoint) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        hooks = tmp_path / "webhooks.json"
        hooks.write_text(json.dumps({"7A6": {"url": hook.url, "secret": hook.secret}}))
        self.env = hub_env(data_dir=tmp_path / "data", api_port=self.port, database_url=db_url,
                           webhooks_file=hooks, audit_checkpoint_interval=1)
        self.log = tmp_path / "hub.log"
        migrated = run_hub(["migrate"], self.env)  # a configured database: only `hub migrate` migrates it
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills: list[str] = []
        #: waits until child ``i``'s report reached the agency (set by the test, which knows the webhook)
        self.wait_shared: Callable[[int], object] = lambda i: None

    def start(self) -> None:
        proc = self.proc = spawn(["up"], self.env, self.log)
        wait_until(lambda: ready(self.base) or proc.poll() is not None, 90, "hub up to be ready")
        assert proc.poll() is None, self.log.read_text()[-3000:]

    def child(self, role: bytes) -> int | None:
        assert self.proc is not None
        for pid in children_of(self.proc.pid):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if role in cmd and (role != b"broker" or b"hub.cli" not in cmd):
                return pid
        return None

    def kill(self, target: str) -> None:
        """kill -9 of one process (the stack replaces it) or of the whole stack (started again here)."""
        assert self.proc is not None
        self.kills.append(target)
        if target == "hub up":
            everything = [self.proc.pid, *children_of(self.proc.pid)]
            for pid in everything:
                os.kill(pid, signal.SIGKILL)
            self.proc.wait(10)
            wait_until(lambda: not any(pid_alive(p) for p in everything), 15, "the stack's processes to die")
            self.start()
            return
        victim = self.child({"worker": b"worker", "deliverer": b"deliver", "broker": b"broker"}[target])
        if victim is not None:
            os.kill(victim, signal.SIGKILL)

    def call(self, method: str, path: str, headers: dict[str, str], ok: tuple[int, ...],
             retry: tuple[int, ...] = (), **kw: Any) -> Any:
        """As a sender does: retry while the hub is down or healing (503, refused connections), and on
        ``retry`` (what a worker has not projected yet)."""
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.request(method, self.base + path, headers=headers, timeout=30, **kw)
                if r.status_code in ok:
                    return r.json() if r.content else None
                assert r.status_code >= 500 or r.status_code in retry, (method, path, r.status_code, r.text)
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"{method} {path} never succeeded"
            time.sleep(0.3)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop(self.proc, signal.SIGTERM, timeout=60)


def consent(child: str, directive_id: str, at: datetime) -> dict[str, Any]:
    d = Directive(id=directive_id, child_id=child, made_by="parent-1", made_by_role=Grantor.PARENT, made_at=at,
                  decision=DirectiveDecision.PERMIT,
                  scope=Scope(sectors=frozenset({Sector.HEALTH}), purposes=frozenset({Purpose.DIRECT_CARE})))
    return directive_to_fhir_dict(d)


def steps(stack: Stack, now: datetime) -> tuple[list[Callable[[], None]], dict[str, Any]]:
    """The traffic: per child, enrolment and a link, the agencies' records, a consent, then for some a
    withdrawal and for one an unlink and a link again. Returns the steps and what they are about."""
    world: dict[str, Any] = {"households": {}, "events": {}, "withdrawn": set(), "directives": {}}
    out: list[Callable[[], None]] = []
    for i in range(CHILDREN):
        seed = 700_000 + (SEED % 1000) * 10 + i
        j = report_not_sent_journey(now, seed=seed, child_id=f"journey-{i}", household_id=f"journey-hh-{i}")
        nhs = j.before_consent[0].subject.value  # the journey's NHS-number link comes first

        def enrol(i: int = i, nhs: str = nhs) -> None:
            hh = stack.call("POST", "/v1/households", COORDINATOR, (201,), json={"coordinator_id": "cc-1"})
            child = stack.call("POST", f"/v1/households/{hh['household_id']}/members", COORDINATOR, (201,),
                               json={"kind": "child", "relationship": "child"})["member_id"]
            world["households"][i] = (hh["household_id"], child, nhs)
            link(i, "link")

        def link(i: int, action: str) -> None:
            hh, child, nhs = world["households"][i]
            path = f"/v1/households/{hh}/members/{child}/identifiers" + ("/unlink" if action == "unlink" else "")
            stack.call("POST", path, COORDINATOR, (202,), json={"system": "nhs-number", "value": nhs,
                                                                "reason": f"{action} in the fault suite"})

        def records(j: Any = j, i: int = i) -> None:
            body = [{"record_type": e.record_type, "sector": e.sector, "source_system": e.source_system,
                     "source_id": e.source_id, "source_version": e.source_version,
                     "occurred_at": e.occurred_at.isoformat(), "category": e.category,
                     "subject": {"system": e.subject.system, "value": e.subject.value}, "body": jsonable(e.body)}
                    for e in j.before_consent if e.record_type != "IdentityLinked"]
            accepted = stack.call("POST", "/v1/events", AGENCY, (200,), json=body)
            world["events"][i] = {a["event_id"] for a in accepted}

        def give(i: int = i) -> None:
            hh, child, _ = world["households"][i]
            directive = f"fault-{SEED}-{i}"
            world["directives"][i] = directive
            # the child is known to consent routes once a worker projected its link: until then, 404
            stack.call("POST", f"/v1/households/{hh}/children/{child}/consents", COORDINATOR, (202,), (404,),
                       json=consent(child, directive, now))

        out += [enrol, records, give]
        if i % 2 == 1:
            def withdraw(i: int = i) -> None:
                hh, child, _ = world["households"][i]
                stack.wait_shared(i)
                stack.call("DELETE", f"/v1/households/{hh}/children/{child}/consents/{world['directives'][i]}",
                           COORDINATOR, (202,), (404,))
                world["withdrawn"].add(i)
            out.append(withdraw)
        if i == 0:
            out += [lambda: link(0, "unlink"), lambda: link(0, "link")]
    return out, world


def shared(hook: AgencyEndpoint, child: str, kind: str = "share") -> list[dict[str, Any]]:
    return [r["json"] for r in hook.received(child, kind) if r["json"]["information"].get("report_id")]


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_kill_9_anywhere_loses_no_event_share_withdrawal_or_audit_record(db: str, tmp_path: Path,
                                                                         request: pytest.FixtureRequest) -> None:
    db_url = f"sqlite:///{tmp_path / 'data' / 'hub.db'}" if db == "sqlite" else request.getfixturevalue("empty_pg_url")
    rng = random.Random(SEED)
    hook = AgencyEndpoint(PAEDIATRICS_SECRET)
    stack = Stack(tmp_path, db_url, hook)
    now = datetime.now(UTC).replace(microsecond=0)
    todo, world = steps(stack, now)
    stack.wait_shared = lambda i: wait_until(
        lambda: shared(hook, world["households"][i][1]), 90, f"child {i}'s report at the webhook")
    faults = sorted(rng.sample(range(len(todo)), min(ROUNDS, len(todo))))
    targets = [rng.choice(["worker", "deliverer", "broker", "hub up"]) for _ in faults]
    stack.start()
    try:
        for n, step in enumerate(todo):
            if n in faults:
                stack.kill(targets[faults.index(n)])
            step()
        check(stack, hook, world)
        signed_to(stack, db_url)
    except BaseException as exc:
        raise AssertionError(f"fault suite failed with HUB_FAULT_SEED={SEED} (kills: {stack.kills}): {exc}\n"
                             f"--- deliveries ---\n{deliveries(stack)}\n--- received ---\n"
                             f"{seen_by(hook)}\n"
                             f"--- hub log tail ---\n{stack.log.read_text(errors='replace')[-3000:]}") from exc
    finally:
        stack.stop()
        hook.close()
    tampered(stack, db_url)


def seen_by(hook: AgencyEndpoint) -> list[tuple[Any, Any]]:
    docs = [json.loads(r["body"]) for r in list(hook.requests)]
    return [(d.get("kind"), d.get("child_id")) for d in docs]


def deliveries(stack: Stack) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(stack.env["HUB_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(
                "select child_id, kind, state, service, round from deliveries order by child_id, created_at"))]
    finally:
        engine.dispose()


def check(stack: Stack, hook: AgencyEndpoint, world: dict[str, Any]) -> None:
    for i, (hh, child, _) in world["households"].items():
        def timeline(hh: str = hh) -> list[str]:
            page = stack.call("GET", f"/v1/households/{hh}/timeline", COORDINATOR, (200,), params={"limit": 500})
            return [e["event_id"] for e in page["entries"]]

        def projected(i: int = i, timeline: Callable[[], list[str]] = timeline) -> bool:
            return bool(world["events"][i] <= set(timeline()))

        def reached(child: str = child, kind: str = "share") -> bool:
            return bool(shared(hook, child, kind))

        wait_until(projected, 90, f"child {i}'s events projected")
        seen = Counter(timeline())
        assert all(seen[e] == 1 for e in world["events"][i]), seen  # exactly once
        if i != 0:  # child 0's link was undone and made again: what it was sent meanwhile is checked below
            wait_until(reached, 90, f"child {i}'s report shared")
        if i in world["withdrawn"]:
            def noticed(child: str = child) -> bool:
                return reached(child, "withdrawal_notice")

            wait_until(noticed, 90, f"child {i}'s withdrawal notice")
    # what the hub records agrees with what the agency's endpoint saw
    rows = [r for r in deliveries(stack) if r[3] == ABUHB_PAEDS["service_name"]]
    received = Counter((d.get("kind"), d.get("child_id")) for d in (json.loads(r["body"]) for r in hook.requests))
    for kind in ("share", "withdrawal_notice"):
        recorded = Counter((k, c) for c, k, state, _, _ in rows if k == kind and state in ("delivered",
                                                                                            "acknowledged"))
        for key, n in recorded.items():
            assert received[key] >= n, (key, n, received)  # a delivery the hub records was received
        for key in [k for k in received if k[0] == kind]:
            # or its outcome is recorded as unknown: sent and not yet answered (a POST under way, or the
            # deliverer killed during it), which the hub settles by sending again or marking it in doubt
            assert key in recorded or any((r[1], r[0]) == key and r[2] in MAYBE_SENT for r in rows), key
    # every change has its audit record, written in the change's own transaction: however the kills fell,
    # each share decision, withdrawal notice and recall the hub holds has exactly one
    def audited() -> Counter[str]:
        engine = sa.create_engine(stack.env["HUB_DATABASE_URL"])
        try:
            with engine.connect() as conn:
                return Counter(r[0] for r in conn.execute(sa.text("select action from audit_log")))
        finally:
            engine.dispose()

    def complete() -> bool:
        a = audited()
        return (a["identity_link"] >= CHILDREN + 1 and a["identity_unlink"] >= 1 and a["share"] >= CHILDREN - 1
                and a["consent_change"] >= CHILDREN + len(world["withdrawn"]))

    wait_until(complete, 60, "every change's audit record")
    engine = sa.create_engine(stack.env["HUB_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            trail = Counter((r[0], r[1]) for r in conn.execute(sa.text(
                "select action, data_ref from audit_log where actor = 'hub-sharing'")))
            decided = [r[0] for r in conn.execute(sa.text("select decision_id from share_decisions"))]
            told = conn.execute(sa.text("select delivery_id, kind from deliveries where kind <> 'share'")).all()
    finally:
        engine.dispose()
    by_ref = Counter(ref for (action, ref), n in trail.items() for _ in range(n)
                     if action in ("share", "withhold", "hold", "override"))
    assert decided and all(by_ref[d] == 1 for d in decided) and sum(by_ref.values()) == len(decided), by_ref
    assert all(trail[(kind, d)] == 1 for d, kind in told), told
    def verified() -> str | None:
        result = run_hub(["audit", "verify"], stack.env)
        return None if result.returncode == 0 else result.stdout + result.stderr

    last: list[str | None] = []
    try:
        wait_until(lambda: last.append(verified()) or last[-1] is None, 30, "hub audit verify to pass")
    except AssertionError:
        raise AssertionError(f"hub audit verify: {last[-1]}") from None


def signed_to(stack: Stack, db_url: str) -> None:
    """Wait for the running hub to sign a checkpoint covering the trail's head as it is now (every second here):
    the tamper checks below need one, and a stack stopped right after the last step may not have written it."""
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            head = conn.execute(sa.select(sa.func.max(audit_log.c.seq))).scalar() or 0
    finally:
        engine.dispose()
    file = Path(stack.env["HUB_DATA_DIR"]) / "audit" / "checkpoints.jsonl"

    def covered() -> bool:
        lines = file.read_text().splitlines() if file.exists() else []
        return any(json.loads(x)["checkpoint"]["seq"] >= head for x in lines)

    wait_until(covered, 30, f"a signed checkpoint covering seq {head}")


def tampered(stack: Stack, db_url: str) -> None:
    """Truncating the trail, deleting its checkpoints or appending to it is named at its position."""
    engine = sa.create_engine(db_url)
    checkpoints = Path(stack.env["HUB_DATA_DIR"]) / "audit" / "checkpoints.jsonl"
    try:
        with engine.begin() as conn:
            last = conn.execute(sa.select(audit_log).order_by(audit_log.c.seq.desc()).limit(1)).one()
            row = {k: getattr(last, k) for k in HASHED}
            at = last.recorded_at.replace(tzinfo=UTC) - timedelta(minutes=10)
            row.update(actor="mallory", detail='{"forged":true}', recorded_at=at)
            row["hash"] = compute_hash(row, last.hash)
            conn.execute(audit_log.insert().values(seq=last.seq + 1, prev_hash=last.hash, **row))
        appended = run_hub(["audit", "verify"], stack.env)
        assert appended.returncode == 1 and f"seq {last.seq + 1}: APPENDED" in appended.stdout, appended.stdout
        signed = [json.loads(x)["checkpoint"] for x in checkpoints.read_text().splitlines()]
        covered = max(cp["seq"] for cp in signed)
        with engine.begin() as conn:
            # the trail cut from the record before the last checkpointed one (seqs start at 1)
            conn.execute(sa.text("delete from audit_log where seq >= :s"), {"s": max(1, covered - 1)})
        cut = run_hub(["audit", "verify"], stack.env)
        assert cut.returncode == 1 and f"seq {max(1, covered - 1)}: TRUNCATED" in cut.stdout, cut.stdout
        checkpoints.unlink()
        # the newest checkpoint may lawfully be missing from the file for GRACE after it was signed (it is
        # written database -> file -> topic): its removal is named once that window has passed
        newest = max(datetime.fromisoformat(cp["signed_at"].replace("Z", "+00:00")) for cp in signed)
        time.sleep(max(0.0, (newest + GRACE - datetime.now(UTC)).total_seconds() + 1))
        gone = run_hub(["audit", "verify"], stack.env)
        assert gone.returncode == 1 and "CHECKPOINT_MISSING" in gone.stdout, gone.stdout
    finally:
        engine.dispose()
