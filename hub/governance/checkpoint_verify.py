"""Verification of the audit chain against its signed checkpoints (:mod:`hub.governance.checkpoints`).

:func:`check` compares the chain as the database holds it with every checkpoint it can read — the
checkpoint file, the ``hub.audit.checkpoints`` topic (when a broker is reachable) and the database's own
notes in ``audit_checkpoints`` — and names, with the first position concerned:

* **CHECKPOINT_INVALID** — a published checkpoint that is unreadable, signed by a key the verifier does
  not hold, or whose signature does not verify. It is refused (not used) and reported.
* **TRUNCATED** — the chain ends before a checkpoint's seq: the records after the chain's end are gone
  (position: the first missing seq).
* **FORGED** — the record at a checkpoint's seq has another hash than the one signed: the records up to
  it were rewritten or replaced (for instance deleted, and fakes with correct links appended in their
  place). Position: the first seq after the last checkpoint that still agrees.
* **APPENDED** — a record after the last checkpoint dated (``recorded_at``) more than :data:`SKEW`
  before that checkpoint was signed: the hub writes records under the lock the checkpoint reads the
  head under, so a record it wrote before the checkpoint would be covered by it.
* **CHECKPOINT_MISSING** — a checkpoint one place holds and another lacks: the database notes one that
  neither the file nor the topic holds, the file lacks one the topic holds (or the other way round), or
  the database lacks its note of one the file or topic holds. Checkpoints are written database → file →
  topic, so the newest, signed less than :data:`GRACE` ago, may still be on its way to the later places.

Where the verifier holds no public key (no ``HUB_AUDIT_PUBLIC_KEYS_FILE`` and no signing key here) the
checkpoints are not checked and the report names no checkpoint source.

Records after the last checkpoint that are not dated before it cannot be told from genuine ones until
the next checkpoint; the report counts them as not yet covered (``uncovered``), which is not a failure.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from hub.core.errors import BrokerError
from hub.core.logging import get_logger
from hub.core.settings import Settings
from hub.db.schema import audit_log
from hub.db.store import Store, as_utc, utcnow
from hub.governance.audit import AuditLog
from hub.governance.audit_records import KINDS, AuditProblem, Kind, VerifyReport, iso_utc
from hub.governance.checkpoint_sinks import read_lines, read_topic
from hub.governance.checkpoint_writer import recorded
from hub.governance.checkpoints import Checkpoint, checkpoint_file, parse_lines, signing_key_path, verifying_keys

log_ = get_logger(__name__)
#: how far a record after the last checkpoint may be dated before it (clocks of different processes)
SKEW = timedelta(seconds=60)
#: how long the newest checkpoint may be missing from the places written after the database
GRACE = timedelta(seconds=30)


@dataclass
class Sources:
    """What the verifier read: published lines per place (None: not read) and the database's notes."""

    file: list[str] | None
    topic: list[str] | None
    noted: list[Checkpoint] = field(default_factory=list)

    def names(self) -> list[str]:
        return [n for n, v in (("file", self.file), ("topic", self.topic)) if v is not None] + ["database"]


def gather_local(store: Store, settings: Settings, topic: list[str] | None) -> Sources:
    """The file and the database's notes, with ``topic`` lines read by :func:`read_topic_lines`.

    The file is expected (and its absence counts as holding nothing) where it is configured, exists, or
    the signing key is here (this is where checkpoints are written); elsewhere, for instance an API
    process on another machine, it is not read."""
    path = checkpoint_file(settings)
    expected = (settings.audit_checkpoint_file is not None or path.exists()
                or signing_key_path(settings).exists())
    return Sources(read_lines(path) if expected else None, topic, recorded(store))


async def read_topic_lines(settings: Settings, bootstrap: str) -> list[str] | None:
    """The topic's lines, or None where there is no broker to read (``bootstrap`` empty)."""
    return await read_topic(settings, bootstrap) if bootstrap else None


def _chain(store: Store) -> tuple[dict[int, str], list[tuple[int, datetime]]]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(audit_log.c.seq, audit_log.c.hash, audit_log.c.recorded_at)
                            .order_by(audit_log.c.seq)).all()
    return {int(r.seq): r.hash for r in rows}, [(int(r.seq), as_utc(r.recorded_at)) for r in rows]


def check(store: Store, settings: Settings, sources: Sources, report: VerifyReport,
          now: datetime | None = None) -> VerifyReport:
    """Add the checkpoint problems to ``report`` (the chain's own verification) and return it."""
    now = now or utcnow()
    keys = verifying_keys(settings)
    if not keys:  # no public key here (HUB_AUDIT_PUBLIC_KEYS_FILE): checkpoints cannot be checked
        report.checkpoint_sources = []
        return report
    problems: dict[tuple[int, str], AuditProblem] = {(p.seq, p.kind): p for p in report.problems}

    def add(seq: int, kind: Kind, message: str) -> None:
        problems.setdefault((seq, kind), AuditProblem(seq, kind, message))

    published: dict[str, dict[str, Checkpoint]] = {}
    for name, lines in (("file", sources.file), ("topic", sources.topic)):
        if lines is None:
            continue
        good, bad = parse_lines(lines, keys)
        published[name] = {cp.digest: cp for cp in good}
        for b in bad:
            add(b.seq, "CHECKPOINT_INVALID", f"in the checkpoint {name}: {b}")
    noted = {cp.digest: cp for cp in sources.noted}
    trusted = {d: cp for place in published.values() for d, cp in place.items()}
    _missing(published, noted, trusted, now, add)

    hashes, dated = _chain(store)
    last_seq = max(hashes, default=0)
    agreeing = 0
    for cp in sorted(trusted.values(), key=lambda c: (c.seq, c.signed_at)):
        signed = iso_utc(cp.signed_at)
        if cp.seq > last_seq:
            add(last_seq + 1, "TRUNCATED", f"the chain ends at seq {last_seq} but the checkpoint signed at "
                                           f"{signed} covers up to seq {cp.seq} ({cp.records} records)")
        elif hashes.get(cp.seq) != cp.hash:
            add(agreeing + 1, "FORGED", f"records from here to seq {cp.seq} are not those the checkpoint signed at "
                                        f"{signed} covers (the hash at seq {cp.seq} differs): rewritten or replaced")
        else:
            agreeing = max(agreeing, cp.seq)
    latest = max(trusted.values(), key=lambda c: (c.seq, c.signed_at), default=None)
    covered = latest.seq if latest is not None else 0
    for seq, at in dated:
        if latest is not None and seq > covered and at < latest.signed_at - SKEW:
            add(seq, "APPENDED", f"after the last checkpoint (seq {covered}) but dated {iso_utc(at)}, before it was "
                                 f"signed at {iso_utc(latest.signed_at)}: not written by the hub")
            break
    report.problems = sorted(problems.values(), key=lambda p: (p.seq, KINDS.index(p.kind)))
    report.checkpoints_checked = len(trusted)
    report.covered_to = covered
    report.uncovered = max(0, last_seq - covered) if trusted else last_seq
    report.checkpoint_sources = sources.names()
    return report


def _missing(published: dict[str, dict[str, Checkpoint]], noted: dict[str, Checkpoint],
             trusted: dict[str, Checkpoint], now: datetime, add: Any) -> None:
    """CHECKPOINT_MISSING: a checkpoint one place holds and another lacks (see the module docstring)."""
    everything = {**noted, **trusted}
    newest = max(everything.values(), key=lambda c: (c.seq, c.signed_at), default=None)

    def in_flight(cp: Checkpoint) -> bool:
        return cp is newest and now - cp.signed_at < GRACE

    for digest, cp in sorted(everything.items(), key=lambda kv: (kv[1].seq, kv[1].signed_at)):
        where = f"checkpoint of seq {cp.seq} signed at {iso_utc(cp.signed_at)}"
        if digest in noted and digest not in trusted and published and not in_flight(cp):
            add(cp.seq, "CHECKPOINT_MISSING", f"the database notes the {where}, but neither the "
                                              f"{' nor the '.join(published)} holds it")
            continue
        if digest not in noted and digest in trusted:
            add(cp.seq, "CHECKPOINT_MISSING", f"the database lost its note of the {where} (its audit tables "
                                              "were edited)")
        lacking = [name for name, held in published.items() if digest not in held]
        if lacking and digest in trusted and not (lacking == ["topic"] and in_flight(cp)):
            add(cp.seq, "CHECKPOINT_MISSING", f"the checkpoint {' and '.join(lacking)} lacks the {where}, which "
                                              f"the {' and '.join(n for n in published if n not in lacking)} "
                                              "holds (removed)")


def summary(report: VerifyReport) -> dict[str, Any]:
    """The checkpoint part of a report, for the API and the CLI."""
    return {"checkpoints_checked": report.checkpoints_checked, "covered_to": report.covered_to,
            "uncovered": report.uncovered, "checkpoint_sources": report.checkpoint_sources}



async def verify_all(log: AuditLog, settings: Settings, bootstrap: str) -> VerifyReport:
    """The chain's own verification (:meth:`AuditLog.verify`) and :func:`check` against every checkpoint
    that can be read; the topic is left out (and not named among the sources) where no broker answers,
    or where the embedded broker's topic is empty (it forgets its log when it stops; the checkpoint job
    re-publishes the file's checkpoints to it)."""
    try:
        topic = await read_topic_lines(settings, bootstrap)
    except BrokerError as exc:
        log_.warning("audit.checkpoint_topic_unreadable", reason=str(exc).splitlines()[0][:200])
        topic = None
    if topic == [] and (settings.embedded_broker or settings.kafka_embedded):
        topic = None  # the embedded broker forgets its log when it stops: an empty topic proves nothing
    report = await asyncio.to_thread(log.verify)
    sources = await asyncio.to_thread(gather_local, log.store, settings, topic)
    return await asyncio.to_thread(check, log.store, settings, sources, report)
