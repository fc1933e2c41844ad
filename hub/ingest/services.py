"""Wiring: builds the hub's services from settings, once, for the API, the CLI and the demo.

The serde is the sealing one: records are encrypted with per-subject data keys from the key vault.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from hub.core.settings import Settings
from hub.db.keyvault import SqlKeyVault, load_keyring
from hub.db.store import Store
from hub.ingest.pseudonym import Pseudonymiser, load_or_create_key
from hub.ingest.service import IngestService
from hub.kafka.publisher import Publisher
from hub.wire.registry import registry_config
from hub.wire.schemas import SchemaCatalogue
from hub.wire.sealing import SealingSerde
from hub.wire.serde import Serde, make_serde, warm


@dataclass
class Services:
    settings: Settings
    store: Store
    catalogue: SchemaCatalogue
    serde: Serde
    pseudonymise: Pseudonymiser
    publisher: Publisher
    ingest: IngestService
    vault: SqlKeyVault
    started: bool = field(default=False)

    @classmethod
    def build(cls, settings: Settings, *, migrate_schema: bool = True) -> Services:
        catalogue = SchemaCatalogue(settings.schema_dir)
        store = Store.open(settings.effective_database_url, migrate_schema=migrate_schema)
        vault = store.vault = SqlKeyVault(store, load_keyring(settings))
        serde = SealingSerde(make_serde(catalogue, registry_config(settings)), vault)
        pseudonymise = Pseudonymiser(
            load_or_create_key(settings.pseudonym_key.get_secret_value(), settings.pseudonym_key_file,
                               settings.data_dir))
        publisher = Publisher(settings)
        ingest = IngestService(store, catalogue, serde, publisher, pseudonymise,
                               max_record_bytes=settings.max_record_bytes, content_digest=pseudonymise.digest)
        return cls(settings, store, catalogue, serde, pseudonymise, publisher, ingest, vault)

    async def start(self) -> None:
        if not self.started:
            await asyncio.to_thread(warm, self.serde)  # registry lookups off the event loop, once
            await self.publisher.start()
            self.started = True

    async def stop(self) -> None:
        if self.started:
            self.started = False
            await self.publisher.stop()
