"""Rebuild projections from the hub's own ingest log, and re-drive dead letters.

``replay_all`` clears the projections and re-applies every accepted event version in acceptance
order through the same decode-and-project code the worker uses, so a mapping or rule change is
applied to history. It needs no broker: the ingest log in the database is the source of truth.
Values are opened with the subjects' data keys; rows of erased subjects (marked in the log, or
whose keys are shredded) are skipped, and the projection's erasure guard drops anything else of
theirs, so a replay never brings an erased person back. Dead letters of erased subjects are not
re-driven.
"""

from __future__ import annotations

import asyncio
import json

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from hub.core.errors import ConfigError, ErasedRecordError, SerdeError
from hub.core.logging import get_logger
from hub.core.settings import Settings, running_bootstrap
from hub.db.erasure_guard import erased_among
from hub.db.keyvault import sealed_serde
from hub.db.store import Store
from hub.kafka.publisher import OutgoingRecord, Publisher
from hub.stream import projection
from hub.wire.schemas import SchemaCatalogue

log = get_logger(__name__)


def replay_log(store: Store, catalogue: SchemaCatalogue, settings: Settings, progress: Progress | None = None) -> int:
    serde = sealed_serde(catalogue, settings, store)
    total = store.log_count()
    task = progress.add_task("replaying", total=total) if progress else None
    projection.clear(store)
    done = erased = 0
    for batch in store.iter_log_values(batch=5000):
        decoded = []
        for seq, value, is_erased in batch:
            if is_erased:
                erased += 1
                continue
            try:
                d = serde.decode(value)
            except ErasedRecordError:
                erased += 1
                continue
            except SerdeError as exc:
                rec = store.log_record(seq)  # the whole row only for the rare record that cannot be decoded
                if rec is not None:
                    store.add_dead_letter(topic=rec.topic, partition=None, offset=-rec.seq, key=rec.key,
                                          value=rec.value, headers=rec.headers, error=exc)
                continue
            decoded.append((d.record_type, catalogue.writer(d.record_type).ce_type, d.record))
        projection.apply(store, decoded, record_changes=False)
        done += len(batch)
        if progress is not None and task is not None:
            progress.update(task, advance=len(batch))
    if erased:
        log.info("replay.erased_records_skipped", records=erased)
    return done


async def replay_all(settings: Settings, console: Console | None = None) -> int:
    store = Store.open(settings.effective_database_url, migrate_schema=settings.owns_database)
    catalogue = SchemaCatalogue(settings.schema_dir)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console or Console(stderr=True), transient=False) as progress:
        return await asyncio.to_thread(replay_log, store, catalogue, settings, progress)


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
