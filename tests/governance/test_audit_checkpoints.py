"""Signed checkpoints of the audit chain, kept off the database: truncation, forgery and lost checkpoints are
caught even when whoever writes the database also removed its anchors (tampering by direct SQL)."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from hub.core.settings import Settings
from hub.db.schema import audit_checkpoints, audit_log
from hub.db.store import Store, as_utc, utcnow
from hub.governance.audit import AuditLog, compute_hash
from hub.governance.checkpoint_sinks import SHA256_OID, timestamp_request
from hub.governance.checkpoint_verify import verify_all
from hub.governance.checkpoint_writer import CheckpointWriter
from hub.governance.checkpoints import (
    checkpoint_file,
    load_or_create_signing_key,
    parse_line,
    public_key_pem,
    sign,
    verifying_keys,
)
from hub.kafka.broker import EmbeddedBroker
from hub.kafka.topics import ensure_topics

HASHED = ("recorded_at", "actor", "actor_role", "action", "subject_household", "subject_child", "data_ref",
          "purpose", "legal_basis", "detail", "source")


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=db_url, data_dir=tmp_path / "data", kafka_bootstrap="")


@pytest.fixture
def log(settings: Settings) -> AuditLog:
    return AuditLog(Store.open(settings.effective_database_url), anchor_every=0)


def writer(log: AuditLog, settings: Settings, **kw: Any) -> CheckpointWriter:
    return CheckpointWriter(log.store, settings, load_or_create_signing_key(settings), **kw)


def seed(log: AuditLog, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        log.record("read_timeline", actor=f"user-{i % 3}", actor_role="coordinator", subject_household=f"h-{i % 2}",
                   data_ref=f"evt-{i}", purpose="direct_care", detail={"i": i}, source="10.0.0.1")


def sql(log: AuditLog, statement: str, **params: Any) -> None:
    with log.engine.begin() as conn:
        conn.execute(sa.text(statement), params)


def append_fake(log: AuditLog, seq: int, at: Any = None) -> None:
    """What someone with write access to the database can do: a record that chains onto the last one."""
    with log.engine.begin() as conn:
        last = conn.execute(sa.select(audit_log).order_by(audit_log.c.seq.desc()).limit(1)).one()
        row = {k: getattr(last, k) for k in HASHED}
        row.update(actor="mallory", detail='{"forged":true}', recorded_at=at or as_utc(last.recorded_at))
        row["hash"] = compute_hash(row, last.hash)
        conn.execute(audit_log.insert().values(seq=seq, prev_hash=last.hash, **row))


async def kinds(log: AuditLog, settings: Settings) -> set[tuple[int, str]]:
    return (await verify_all(log, settings, settings.kafka_bootstrap)).kinds()


# ---- writing ----------------------------------------------------------------------------------------
async def test_checkpoint_is_signed_published_and_verifies(log: AuditLog, settings: Settings) -> None:
    seed(log, 5)
    w = writer(log, settings)
    cp = await w.checkpoint()
    assert cp is not None and (cp.seq, cp.records) == (5, 5) and cp.hash == log.get(5).hash
    key_file = settings.data_dir / "keys" / "audit-signing.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    lines = checkpoint_file(settings).read_text().splitlines()
    assert len(lines) == 1
    assert parse_line(lines[0], verifying_keys(settings)) == cp  # the signature checks out with the public key
    assert "BEGIN PUBLIC KEY" in public_key_pem(load_or_create_signing_key(settings).public_key())
    with log.engine.connect() as conn:
        assert conn.execute(sa.select(audit_checkpoints.c.seq)).scalars().all() == [5]
    assert await w.checkpoint() is None  # nothing new: no second checkpoint of the same head

    report = await verify_all(log, settings, "")
    assert report.ok and report.checkpoints_checked == 1 and report.covered_to == 5 and report.uncovered == 0
    assert report.checkpoint_sources == ["file", "database"]
    seed(log, 2, start=5)  # written after the checkpoint: not yet covered, which is not a failure
    report = await verify_all(log, settings, "")
    assert report.ok and report.uncovered == 2
    elsewhere = settings.model_copy(update={"data_dir": settings.data_dir.parent / "elsewhere"})
    report = await verify_all(log, elsewhere, "")  # no public key held there: nothing can be checked
    assert report.ok and report.checkpoint_sources == [] and report.checkpoints_checked == 0


# ---- truncation and forgery ------------------------------------------------------------------------
async def test_truncated_tail_with_its_anchors_removed_is_caught(log: AuditLog, settings: Settings) -> None:
    seed(log, 10)
    log.anchor()
    await writer(log, settings).checkpoint()
    sql(log, "delete from audit_log where seq >= 9")
    sql(log, "delete from audit_anchors")
    assert log.verify().ok  # the chain alone cannot tell
    report = await verify_all(log, settings, "")
    assert report.kinds() == {(9, "TRUNCATED")}, str(report)
    assert "seq 9: TRUNCATED: the chain ends at seq 8" in str(report) and "covers up to seq 10" in str(report)
    sql(log, "delete from audit_checkpoints")  # the database's note of the checkpoint goes too
    assert await kinds(log, settings) == {(9, "TRUNCATED"), (10, "CHECKPOINT_MISSING")}


async def test_fakes_appended_in_place_of_checkpointed_records_are_forged(log: AuditLog, settings: Settings) -> None:
    seed(log, 6)
    w = writer(log, settings)
    await w.checkpoint()
    seed(log, 4, start=6)
    await w.checkpoint()
    sql(log, "delete from audit_log where seq >= 8")
    sql(log, "delete from audit_anchors")
    for seq in (8, 9, 10):
        append_fake(log, seq)
    assert log.verify().ok  # links and hashes are all correct
    report = await verify_all(log, settings, "")
    assert report.kinds() == {(7, "FORGED")}, str(report)  # after seq 6, the last checkpoint that agrees
    assert "the hash at seq 10 differs" in str(report)


async def test_what_is_caught_after_the_last_checkpoint(log: AuditLog, settings: Settings) -> None:
    seed(log, 5)
    w = writer(log, settings)
    last_at = log.get(5).recorded_at
    await w.checkpoint(now=last_at + timedelta(hours=2))
    # appended after the checkpoint and dated after it: indistinguishable until the next checkpoint
    append_fake(log, 6, at=last_at + timedelta(hours=3))
    report = await verify_all(log, settings, "")
    assert report.ok and report.uncovered == 1
    # appended after the checkpoint but dated before it was signed: the hub would have covered it
    sql(log, "delete from audit_log where seq = 6")
    append_fake(log, 6, at=last_at + timedelta(minutes=1))
    report = await verify_all(log, settings, "")
    assert report.kinds() == {(6, "APPENDED")}, str(report)


# ---- the checkpoints themselves ---------------------------------------------------------------------
async def test_checkpoint_with_a_bad_signature_is_refused(log: AuditLog, settings: Settings) -> None:
    seed(log, 4)
    await writer(log, settings).checkpoint()
    path = checkpoint_file(settings)
    doc = json.loads(path.read_text())
    doc["checkpoint"]["seq"] = 99  # claims more records than there are, signature left as it was
    stranger = Ed25519PrivateKey.generate()
    foreign = sign(stranger, seq=50, hash="0" * 64, records=50, signed_at=utcnow() - timedelta(hours=1))
    with path.open("a") as fh:
        fh.write(json.dumps(doc) + "\n" + foreign.line() + "\nnot json\n")
    report = await verify_all(log, settings, "")
    assert report.kinds() == {(0, "CHECKPOINT_INVALID"), (50, "CHECKPOINT_INVALID"), (99, "CHECKPOINT_INVALID")}
    text = str(report)
    assert "signature does not verify" in text and "unknown key" in text and "TRUNCATED" not in text
    assert report.checkpoints_checked == 1  # only the genuine one is used


async def test_rotated_key_is_trusted_once_its_public_key_is_published(log: AuditLog, settings: Settings,
                                                                        tmp_path: Path) -> None:
    seed(log, 3)
    await writer(log, settings).checkpoint(now=utcnow() - timedelta(minutes=5))
    old_public = public_key_pem(load_or_create_signing_key(settings).public_key())
    new_key = tmp_path / "new.key"
    from cryptography.hazmat.primitives import serialization
    fresh = Ed25519PrivateKey.generate()
    new_key.write_bytes(fresh.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    rotated = settings.model_copy(update={"audit_signing_key_file": new_key})
    seed(log, 2, start=3)
    await writer(log, rotated).checkpoint()
    only_new = await verify_all(log, rotated, "")  # the old checkpoint's key is not held: refused
    assert (3, "CHECKPOINT_INVALID") in only_new.kinds()
    keys = tmp_path / "audit-public.pem"
    keys.write_text(old_public + public_key_pem(fresh.public_key()))
    both = await verify_all(log, rotated.model_copy(update={"audit_public_keys_file": keys}), "")
    assert both.ok and both.checkpoints_checked == 2, str(both)


async def test_checkpoint_file_deleted_while_the_topic_holds_them(sqlite_url: str, tmp_path: Path) -> None:
    broker = EmbeddedBroker().start()
    try:
        settings = Settings(database_url=sqlite_url, data_dir=tmp_path / "data", kafka_bootstrap=broker.bootstrap,
                            kafka_embedded=True)
        await ensure_topics(settings)
        log = AuditLog(Store.open(sqlite_url), anchor_every=0)
        w = writer(log, settings)
        seed(log, 3)
        await w.checkpoint()
        seed(log, 3, start=3)
        await w.checkpoint()
        report = await verify_all(log, settings, broker.bootstrap)
        assert report.ok and report.checkpoints_checked == 2 and report.checkpoint_sources == ["file", "topic",
                                                                                               "database"]
        checkpoint_file(settings).unlink()
        report = await verify_all(log, settings, broker.bootstrap)
        assert report.kinds() == {(3, "CHECKPOINT_MISSING"), (6, "CHECKPOINT_MISSING")}, str(report)
        assert "the checkpoint file lacks the checkpoint of seq 6" in str(report)
        # the tail cut off the file only: the topic still proves the truncation
        sql(log, "delete from audit_log where seq >= 5")
        assert (5, "TRUNCATED") in (await verify_all(log, settings, broker.bootstrap)).kinds()
    finally:
        broker.stop()


async def test_an_embedded_broker_that_lost_its_log_gets_the_files_checkpoints_again(sqlite_url: str,
                                                                                     tmp_path: Path) -> None:
    log = AuditLog(Store.open(sqlite_url), anchor_every=0)
    settings = Settings(database_url=sqlite_url, data_dir=tmp_path / "data", kafka_bootstrap="")
    w = writer(log, settings)
    for start in (0, 2):
        seed(log, 2, start=start)
        await w.checkpoint()  # no broker yet: the file and the database only
    broker = EmbeddedBroker().start()
    try:
        restarted = settings.model_copy(update={"kafka_bootstrap": broker.bootstrap, "kafka_embedded": True})
        await ensure_topics(restarted)
        assert (await verify_all(log, restarted, broker.bootstrap)).checkpoint_sources == ["file", "database"]
        await writer(log, restarted).flush()  # the job's first pass
        report = await verify_all(log, restarted, broker.bootstrap)
        assert report.ok and report.checkpoint_sources == ["file", "topic", "database"], str(report)
        assert report.checkpoints_checked == 2
    finally:
        broker.stop()


# ---- timestamp authority ----------------------------------------------------------------------------
def _tsa(status: int) -> httpx.AsyncClient:
    def answer(request: httpx.Request) -> httpx.Response:
        body = request.content
        assert request.headers["content-type"] == "application/timestamp-query"
        assert body[0] == 0x30 and SHA256_OID in body
        digest = body[body.index(SHA256_OID) + len(SHA256_OID) + 4:][:32]  # after NULL and the OCTET STRING header
        token = b"\x30" + bytes([len(digest) + 2]) + b"\x04\x20" + digest
        status_info = b"\x30\x03\x02\x01" + bytes([status])
        reply = status_info + (token if status == 0 else b"")
        return httpx.Response(200, content=b"\x30" + bytes([len(reply)]) + reply)

    return httpx.AsyncClient(transport=httpx.MockTransport(answer))


async def test_timestamp_authority_stamps_each_checkpoint(log: AuditLog, settings: Settings) -> None:
    digest = hashlib.sha256(b"x").digest()
    assert timestamp_request(digest, 7).startswith(b"\x30") and digest in timestamp_request(digest, 7)
    stamped = settings.model_copy(update={"audit_tsa_url": "http://tsa.test/"})
    seed(log, 2)
    async with _tsa(0) as client:
        cp = await writer(log, stamped, tsa_client=client).checkpoint()
    assert cp is not None and cp.timestamp is not None and cp.timestamp["tsa"] == "http://tsa.test/"
    assert hashlib.sha256(cp.signed_bytes()).digest() in base64.b64decode(cp.timestamp["token"])
    line = json.loads(checkpoint_file(settings).read_text().splitlines()[-1])
    assert line["timestamp"] == cp.timestamp
    seed(log, 1, start=2)
    async with _tsa(2) as client:  # refused: the checkpoint still stands on its signature
        cp = await writer(log, stamped, tsa_client=client).checkpoint()
    assert cp is not None and cp.timestamp is None
    assert (await verify_all(log, settings, "")).ok


# ---- the command line -------------------------------------------------------------------------------
def test_cli_checkpoint_verify_and_public_key(log: AuditLog, settings: Settings) -> None:
    from hub.cli.main import app

    env = {"HUB_DATABASE_URL": settings.effective_database_url, "HUB_DATA_DIR": str(settings.data_dir),
           "HUB_LOG_LEVEL": "WARNING", "HUB_KAFKA_BOOTSTRAP": ""}
    runner = CliRunner()
    seed(log, 10)
    made = runner.invoke(app, ["audit", "checkpoint"], env=env)
    assert made.exit_code == 0 and "checkpoint of seq 10 (10 records)" in made.output, made.output
    key = runner.invoke(app, ["audit", "public-key"], env=env)
    assert key.exit_code == 0 and "-----BEGIN PUBLIC KEY-----" in key.output
    ok = runner.invoke(app, ["audit", "verify"], env=env)
    assert ok.exit_code == 0 and "audit log intact: 10 records" in ok.output and "1 signed checkpoint" in ok.output
    sql(log, "delete from audit_log where seq >= 8")
    bad = runner.invoke(app, ["audit", "verify"], env=env)
    assert bad.exit_code == 1, bad.output
    assert "seq 8: TRUNCATED: the chain ends at seq 7" in bad.output


# ---- through `hub up` -------------------------------------------------------------------------------
def test_running_hub_checkpoints_and_verify_catches_a_truncation(tmp_path: Path) -> None:
    from hub.kafka.broker import free_port
    from tests.support import bearer, hub_env, ready, run_hub, spawn, stop, wait_until

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = hub_env(data_dir=tmp_path / "data", api_port=port, audit_checkpoint_interval=1)
    proc = spawn(["up"], env, tmp_path / "hub.log")
    try:
        wait_until(lambda: ready(base) or proc.poll() is not None, 60, "hub up to be ready")
        assert proc.poll() is None, (tmp_path / "hub.log").read_text()[-3000:]
        cc = bearer("coordinator", "cc-1")
        household = httpx.post(f"{base}/v1/households", json={"coordinator_id": "cc-1"}, headers=cc,
                               timeout=10).json()["household_id"]
        for _ in range(3):  # reads are audited
            assert httpx.get(f"{base}/v1/households/{household}/timeline", headers=cc, timeout=10).status_code == 200
        cp_file = tmp_path / "data" / "audit" / "checkpoints.jsonl"

        def covered() -> int:
            lines = cp_file.read_text().splitlines() if cp_file.exists() else []
            return max((json.loads(x)["checkpoint"]["seq"] for x in lines), default=0)

        wait_until(lambda: covered() >= 3, 30, "a checkpoint covering the reads")

        refused = httpx.get(f"{base}/v1/audit/verify", headers=cc, timeout=10)
        assert refused.status_code == 403, refused.text  # a coordinator may not verify the audit log
        report = httpx.get(f"{base}/v1/audit/verify", headers=bearer("ig_officer", "ig-1"), timeout=30).json()
        assert report["ok"] is True and report["checkpoints_checked"] >= 1, report
        assert report["checkpoint_sources"] == ["file", "topic", "database"], report

        verified = run_hub(["audit", "verify"], env)
        assert verified.returncode == 0 and "audit log intact" in verified.stdout, verified.stdout + verified.stderr
    finally:
        stop(proc)
    store = Store.open(f"sqlite:///{tmp_path / 'data' / 'hub.db'}")
    with store.engine.begin() as conn:  # the tail and every trace of it in the database go
        last = conn.execute(sa.select(sa.func.max(audit_log.c.seq))).scalar_one()
        conn.execute(sa.text("delete from audit_log where seq >= :s"), {"s": last - 1})
        conn.execute(sa.text("delete from audit_anchors"))
        conn.execute(sa.text("delete from audit_checkpoints"))
    failed = run_hub(["audit", "verify"], env)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert f"seq {last - 1}: TRUNCATED" in failed.stdout and "CHECKPOINT_MISSING" in failed.stdout
