"""Writing signed checkpoints of the audit chain's head, as a background job (:mod:`hub.core.jobs`).

:class:`CheckpointJob` runs every ``HUB_AUDIT_CHECKPOINT_INTERVAL`` seconds in whichever process holds
the chores lease (a `hub deliver`, or a delivering worker: :mod:`hub.runtime.placement`), so one writer
signs at a time. A pass reads the head under the audit write lock (:meth:`AuditLog.head`); when it moved
since the last checkpoint it signs a :class:`~hub.governance.checkpoints.Checkpoint`, asks the timestamp
authority for a token where one is configured, and publishes it in this order: a row in
``audit_checkpoints``, a line in the checkpoint file, a record on ``hub.audit.checkpoints``. A sink that
fails is retried on the next pass before anything new is signed. The first pass, and any pass that finds
the topic empty when it publishes (a broker that lost its log while the hub ran: the embedded one is
healed after a kill by a new, empty broker), re-publishes the file's checkpoints to the topic.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

import httpx
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub.core.jobs import Job, LeaseLike
from hub.core.logging import get_logger
from hub.core.settings import Settings, running_bootstrap
from hub.db.schema import audit_checkpoints
from hub.db.store import Store, as_utc, utcnow
from hub.governance import checkpoint_sinks as sinks
from hub.governance.audit import AuditLog
from hub.governance.checkpoints import (
    Checkpoint,
    checkpoint_file,
    load_or_create_signing_key,
    parse_lines,
    sign,
    verifying_keys,
)

log = get_logger(__name__)
C = audit_checkpoints.c


def recorded(store: Store) -> list[Checkpoint]:
    """The checkpoints noted in the database, oldest first (without signatures)."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(audit_checkpoints).order_by(C.seq, C.signed_at)).all()
    return [Checkpoint(int(r.seq), r.hash, int(r.records), as_utc(r.signed_at), r.key_id) for r in rows]


def note(store: Store, cp: Checkpoint) -> None:
    with store.engine.begin() as conn:
        conn.execute(audit_checkpoints.insert().values(digest=cp.digest, seq=cp.seq, hash=cp.hash,
                                                       records=cp.records, signed_at=cp.signed_at,
                                                       key_id=cp.key_id))


@dataclass
class CheckpointWriter:
    """Signs the head and publishes it; ``pending`` holds checkpoints a sink has not taken yet."""

    store: Store
    settings: Settings
    key: Ed25519PrivateKey
    tsa_client: httpx.AsyncClient | None = None
    pending: list[tuple[Checkpoint, list[str]]] = field(default_factory=list)
    reseeded: bool = False

    def bootstrap(self) -> str:
        return self.settings.kafka_bootstrap or running_bootstrap(self.settings)

    async def checkpoint(self, now: datetime | None = None) -> Checkpoint | None:
        """Publish what is pending, then sign and publish the head if it moved; the new checkpoint or None."""
        await self.flush()
        head = await asyncio.to_thread(AuditLog(self.store).head)
        if head is None:
            return None
        seq, hash_, count = head
        last = await asyncio.to_thread(recorded, self.store)
        if last and last[-1].seq == seq and last[-1].hash == hash_:
            return None
        cp = sign(self.key, seq=seq, hash=hash_, records=count, signed_at=now or utcnow())
        if self.settings.audit_tsa_url:
            try:
                stamp = await sinks.request_timestamp(self.settings.audit_tsa_url, cp, self.tsa_client)
                cp = Checkpoint(cp.seq, cp.hash, cp.records, cp.signed_at, cp.key_id, cp.signature, stamp)
            except (httpx.HTTPError, ValueError) as exc:  # the checkpoint still stands on its signature
                log.warning("audit.timestamp_failed", reason=str(exc).splitlines()[0][:200] if str(exc) else "")
        await asyncio.to_thread(note, self.store, cp)
        self.pending.append((cp, ["file", "topic"]))
        await self.flush()
        log.info("audit.checkpoint", seq=cp.seq, key_id=cp.key_id, timestamped=cp.timestamp is not None)
        return cp

    async def flush(self) -> None:
        """Hand every pending checkpoint to the sinks that have not taken it (in order; stops at a failure)."""
        if not self.reseeded:
            await self.reseed_topic()
        while self.pending:
            cp, left = self.pending[0]
            if "file" in left:
                await asyncio.to_thread(sinks.append_line, checkpoint_file(self.settings), cp.line())
                left.remove("file")
            if "topic" in left:
                bootstrap = self.bootstrap()
                if bootstrap and await sinks.topic_is_empty(self.settings, bootstrap):
                    # a broker that lost its log since (the embedded one, killed and healed): the file's
                    # checkpoints, this one included (the file is written first), go to the topic again
                    await self.reseed_topic()
                elif bootstrap:
                    await sinks.publish(self.settings, bootstrap, [cp])
                left.remove("topic")
            self.pending.pop(0)

    async def reseed_topic(self) -> None:
        """Copy the file's checkpoints to the topic when the topic holds none (a broker that lost its log)."""
        bootstrap = self.bootstrap()
        if not bootstrap:
            self.reseeded = True
            return
        on_topic = await sinks.read_topic(self.settings, bootstrap)
        if not on_topic:
            lines = await asyncio.to_thread(sinks.read_lines, checkpoint_file(self.settings))
            good, _ = parse_lines(lines, verifying_keys(self.settings))
            if good:
                await sinks.publish(self.settings, bootstrap, good)
                log.info("audit.checkpoints_republished", count=len(good))
        self.reseeded = True


class CheckpointJob(Job):
    """Checkpoint the audit chain every ``every`` seconds, under ``lease`` (the chores lease)."""

    def __init__(self, store: Store, settings: Settings, *, every: float, lease: LeaseLike | None = None,
                 tsa_client: httpx.AsyncClient | None = None) -> None:
        super().__init__("audit.checkpoint", every=every, lease=lease, first_after=min(every, 5.0))
        self.writer = CheckpointWriter(store, settings, load_or_create_signing_key(settings), tsa_client)

    async def run_once(self) -> float | None:
        await self.writer.checkpoint()
        return None
