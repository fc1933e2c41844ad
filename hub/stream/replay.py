"""Rebuild projections from the hub's own ingest log, and re-drive dead letters.

``replay_all`` clears the projections and re-applies every accepted event version in acceptance
order through the same decode-and-project code the worker uses, so a mapping or rule change is
applied to history. It needs no broker: the ingest log in the database is the source of truth.
A large log (from 20,000 records, or ``hub replay --processes N``) is decoded, built into rows and
sealed in worker processes, batch by batch, while this process writes each batch in log order in one
transaction, as the single-process replay does: the result is the same, only sooner.
Values are opened with the subjects' data keys; rows of erased subjects (marked in the log, or
whose keys are shredded) are skipped, and the projection's erasure guard drops anything else of
theirs, so a replay never brings an erased person back. Dead letters of erased subjects are not
re-driven.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.pool import AsyncResult

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from hub.core.errors import ConfigError, ErasedRecordError, SerdeError
from hub.core.logging import get_logger
from hub.core.settings import Settings, running_bootstrap
from hub.db.erasure_guard import erased_among
from hub.db.keyvault import SqlKeyVault, load_keyring, sealed_serde
from hub.db.store import Store
from hub.kafka.publisher import OutgoingRecord, Publisher
from hub.stream import projection
from hub.wire.schemas import SchemaCatalogue

log = get_logger(__name__)


#: a log at least this long is replayed with worker processes unless told otherwise
PARALLEL_FROM = 20_000
#: log rows per batch: one decode task and one write transaction
BATCH = 5000


@dataclass
class Opened:
    """A batch of the log decoded, built into rows and its entries sealed: all the write needs."""

    built: projection.Built
    sealed: projection.Sealed
    erased: int
    failed: list[tuple[int, SerdeError]]  # (seq, why) of records that no longer decode


class Opener:
    """Turns batches of ``(seq, value, erased)`` from the log into :class:`Opened`: the CPU-bound part of a
    replay, the same whether it runs in this process or in a worker process."""

    def __init__(self, store: Store, catalogue: SchemaCatalogue, settings: Settings) -> None:
        self.store = store
        self.catalogue = catalogue
        self.serde = sealed_serde(catalogue, settings, store)

    def __call__(self, batch: list[tuple[int, bytes, bool]]) -> Opened:
        decoded = []
        erased = 0
        failed: list[tuple[int, SerdeError]] = []
        for seq, value, is_erased in batch:
            if is_erased:
                erased += 1
                continue
            try:
                d = self.serde.decode(value)
            except ErasedRecordError:
                erased += 1
                continue
            except SerdeError as exc:
                failed.append((seq, exc))
                continue
            decoded.append((d.record_type, self.catalogue.writer(d.record_type).ce_type, d.record))
        built = projection.build(decoded)
        return Opened(built, projection.seal_entries(self.store, built), erased, failed)


_opener: Opener | None = None  # a worker process's own (its own database connections)


def _start_worker(url: str, settings: Settings) -> None:
    global _opener
    store = Store.open(url, migrate_schema=False)
    store.vault = SqlKeyVault(store, load_keyring(settings))
    _opener = Opener(store, SchemaCatalogue(settings.schema_dir), settings)


def _open_in_worker(batch: list[tuple[int, bytes, bool]]) -> Opened:
    assert _opener is not None, "worker process not started"
    return _opener(batch)


def _opened_in_processes(store: Store, settings: Settings, processes: int) -> Iterator[Opened]:
    """The log's batches opened by ``processes`` worker processes, yielded in log order; at most two batches
    per process are in flight, so memory stays bounded whatever the log's size."""
    url = store.engine.url.render_as_string(hide_password=False)
    with multiprocessing.get_context("spawn").Pool(processes, _start_worker, (url, settings)) as pool:
        pending: deque[AsyncResult[Opened]] = deque()
        for batch in store.iter_log_values(batch=BATCH):
            pending.append(pool.apply_async(_open_in_worker, (batch,)))
            if len(pending) >= 2 * processes:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def default_processes(total: int) -> int:
    """Worker processes for a log of ``total`` records: one per core for a large log, none for a small one."""
    return max(2, os.cpu_count() or 1) if total >= PARALLEL_FROM else 1


def replay_log(store: Store, catalogue: SchemaCatalogue, settings: Settings, progress: Progress | None = None,
               processes: int | None = None) -> int:
    """Rebuild the projections from the log; ``processes`` > 1 decodes and seals in that many worker processes
    (default: :func:`default_processes`) while this process writes every batch, in log order, as one would."""
    total = store.log_count()
    processes = default_processes(total) if processes is None else max(1, processes)
    task = progress.add_task("replaying", total=total) if progress else None
    projection.clear(store)
    done = erased = 0
    if processes > 1:
        opened: Iterator[Opened] = _opened_in_processes(store, settings, processes)
    else:
        opener = Opener(store, catalogue, settings)
        opened = (opener(batch) for batch in store.iter_log_values(batch=BATCH))
    for batch in opened:
        for seq, exc in batch.failed:
            rec = store.log_record(seq)  # the whole row only for the rare record that cannot be decoded
            if rec is not None:
                store.add_dead_letter(topic=rec.topic, partition=None, offset=-rec.seq, key=rec.key,
                                      value=rec.value, headers=rec.headers, error=exc)
        projection.write(store, batch.built, batch.sealed, record_changes=False)
        n = len(batch.built) + batch.erased + len(batch.failed)
        done, erased = done + n, erased + batch.erased
        if progress is not None and task is not None:
            progress.update(task, advance=n)
    if erased:
        log.info("replay.erased_records_skipped", records=erased)
    return done


async def replay_all(settings: Settings, console: Console | None = None, processes: int | None = None) -> int:
    store = Store.open(settings.effective_database_url, migrate_schema=settings.owns_database)
    catalogue = SchemaCatalogue(settings.schema_dir)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console or Console(stderr=True), transient=False) as progress:
        return await asyncio.to_thread(replay_log, store, catalogue, settings, progress, processes)


async def replay_dead_letters(settings: Settings, ids: list[int]) -> int:
    bootstrap = settings.kafka_bootstrap or running_bootstrap(settings)
    if not bootstrap:
        raise ConfigError("no broker to publish to: start the hub (`hub up`) or set HUB_KAFKA_BOOTSTRAP")
    settings = settings.model_copy(update={"kafka_bootstrap": bootstrap,
                                           "kafka_embedded": settings.kafka_embedded or not settings.kafka_bootstrap})
    store = Store.open(settings.effective_database_url, migrate_schema=settings.owns_database)
    letters = [d for d in store.dead_letters(limit=100000) if not ids or d["id"] in ids]
    with store.engine.connect() as conn:  # an erased subject's records are not re-driven
        erased = erased_among(conn, {d["key"] for d in letters if d["key"]})
    letters = [d for d in letters if d["key"] not in erased]
    if not letters:
        return 0
    publisher = Publisher(settings)
    await publisher.start()
    try:
        await publisher.publish([OutgoingRecord(d["topic"], d["key"] or "", bytes(d["value"]),
                                                [(k, v.encode()) for k, v in json.loads(d["headers"])])
                                 for d in letters])
    finally:
        await publisher.stop()
    store.mark_dead_letters_replayed([d["id"] for d in letters])
    return len(letters)
