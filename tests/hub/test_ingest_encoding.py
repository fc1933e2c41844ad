"""One Avro encoding per event: the hub reuses the body bytes a connector made while checking the body.

The reused bytes must give exactly the record the hub would have encoded itself, and must never be used
for an event whose body was replaced after the check, nor where the hub writes with other schemas than
the ones the connectors check against.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from connectors import education
from hub.core.events import InboundEvent
from hub.core.settings import Settings
from hub.ingest.services import Services
from hub.wire.schemas import SchemaCatalogue
from hub.wire.serde import SingleObjectSerde

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "connectors" / "fixtures" / "education" / "send-events.csv"


def _events() -> list[InboundEvent]:
    results = list(education.iter_payload(FIXTURE.read_bytes(), "text/csv"))
    events = [r.event for r in results if r.event is not None]
    assert len(events) >= 3
    return events


def test_connector_events_carry_their_checked_body_bytes() -> None:
    events = _events()
    assert all(ev.encoded_body() is not None for ev in events)
    rebuilt = replace(events[0], body={**events[0].body})
    assert rebuilt.encoded_body() is None  # another body object: the hub encodes it whole


def test_meta_plus_reused_body_bytes_are_the_whole_record_encoded(settings: Settings) -> None:
    catalogue = SchemaCatalogue(settings.schema_dir)
    serde = SingleObjectSerde(catalogue)
    services = Services.build(settings)
    services.ingest.clock = lambda: datetime(2026, 9, 1, 9, 0, tzinfo=UTC)  # both encodings received alike
    try:
        for ev in _events():
            body = ev.encoded_body()
            assert body is not None and catalogue.shipped(ev.record_type)
            prepared, problems = services.ingest.prepare([ev])
            assert not problems and prepared[0] is not None
            reused = services.serde.decode(prepared[0].row["value"]).record
            whole, _ = services.ingest.prepare([replace(ev, encoded=None)])
            assert whole[0] is not None
            assert reused == services.serde.decode(whole[0].row["value"]).record
            meta = reused["meta"]
            assert serde.encode_body(ev.record_type, meta, body) == serde.encode(ev.record_type,
                                                                                 {"meta": meta, **ev.body})
    finally:
        services.store.engine.dispose()


def test_a_hub_writing_other_schemas_encodes_the_body_itself(tmp_path: Path, settings: Settings) -> None:
    """A body checked against the shipped schemas is not reused where HUB_SCHEMA_DIR holds another version."""
    ev = _events()[0]
    schemas = tmp_path / "schemas"
    shutil.copytree(settings.schema_dir, schemas)
    path = schemas / f"uk.familyhub.event.{ev.record_type}.avsc"
    changed = json.loads(path.read_text())
    changed["doc"] = "a locally amended schema"
    path.write_text(json.dumps(changed))
    catalogue = SchemaCatalogue(schemas)
    assert not catalogue.shipped(ev.record_type)
    assert SchemaCatalogue(settings.schema_dir).shipped(ev.record_type)
    services = Services.build(settings.model_copy(update={"schema_dir": schemas}))
    try:
        prepared, problems = services.ingest.prepare([ev])
        assert not problems and prepared[0] is not None
        assert services.serde.decode(prepared[0].row["value"]).record["meta"]["source_id"] == ev.source_id
    finally:
        services.store.engine.dispose()
