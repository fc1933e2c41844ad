"""Wiring: builds the hub's services from settings, once, for the API, the CLI and the demo."""

from __future__ import annotations

from dataclasses import dataclass, field

from hub.ingest import IngestService
from hub.pseudonym import Pseudonymiser, load_or_create_key
from hub.publisher import Publisher
from hub.schemas import SchemaCatalogue
from hub.serde import Serde, make_serde
from hub.settings import Settings
from hub.store import Store


@dataclass
class Services:
    settings: Settings
    store: Store
    catalogue: SchemaCatalogue
    serde: Serde
    pseudonymise: Pseudonymiser
    publisher: Publisher
    ingest: IngestService
    started: bool = field(default=False)

    @classmethod
    def build(cls, settings: Settings, *, migrate_schema: bool = True) -> Services:
        catalogue = SchemaCatalogue(settings.schema_dir)
        store = Store.open(settings.effective_database_url, migrate_schema=migrate_schema)
        serde = make_serde(catalogue, settings.schema_registry_url)
        pseudonymise = Pseudonymiser(
            load_or_create_key(settings.pseudonym_key, settings.pseudonym_key_file, settings.data_dir))
        publisher = Publisher(settings)
        ingest = IngestService(store, catalogue, serde, publisher, pseudonymise)
        return cls(settings, store, catalogue, serde, pseudonymise, publisher, ingest)

    async def start(self) -> None:
        if not self.started:
            await self.publisher.start()
            self.started = True

    async def stop(self) -> None:
        if self.started:
            self.started = False
            await self.publisher.stop()
