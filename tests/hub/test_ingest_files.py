"""`hub ingest` file imports and the shared batch acceptance, against a real broker and both databases."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from typer.testing import CliRunner

from connectors.results import RecordResult
from hub.cli.main import app as cli_app
from hub.core.errors import Problem
from hub.core.events import InboundEvent, SubjectRef
from hub.core.settings import Settings
from hub.ingest.batch import accept_results, import_files
from hub.ingest.services import Services
from hub.kafka.broker import EmbeddedBroker
from hub.kafka.topics import ensure_topics

pytestmark = pytest.mark.broker
ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "connectors" / "fixtures"


@pytest.fixture
async def services(db_url: str, tmp_path: Path) -> AsyncIterator[Services]:
    broker = EmbeddedBroker().start()
    settings = Settings(
        kafka_bootstrap=broker.bootstrap,
        kafka_embedded=True,
        database_url=db_url,
        data_dir=tmp_path / "data",
        schema_dir=ROOT / "schemas",
        pseudonym_key="k" * 32,
    )
    await ensure_topics(settings)
    svc = Services.build(settings)
    await svc.start()
    yield svc
    await svc.stop()
    svc.store.engine.dispose()
    broker.stop()


async def topic_records(services: Services, topic: str) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=services.settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    serde = services.serde  # opens the sealed values with the subjects' data keys
    out = []
    try:
        while batch := await consumer.getmany(timeout_ms=1500):
            out += [serde.decode(m.value).record for msgs in batch.values() for m in msgs]
    finally:
        await consumer.stop()
    return out


def _big_csv(path: Path, rows: int) -> None:
    lines = (FIXTURES / "education/send-events.csv").read_text().splitlines()
    header, body = lines[0], [line for line in lines[1:] if ",PLC-01," in line or ",ATT-01," in line]
    with path.open("w") as f:
        f.write(header + "\n")
        for i in range(rows // len(body)):
            for line in body:
                f.write(line.replace(",PLC-01,", f",PLC-{i},").replace(",ATT-01,", f",ATT-{i},") + "\n")


async def test_import_health_directory_reports_file_and_line(services: Services, tmp_path: Path) -> None:
    src = tmp_path / "health"
    shutil.copytree(FIXTURES / "health", src)
    tx = json.loads((src / "bundle-transaction-admission.json").read_text())
    tx["entry"][0]["resource"]["identifier"][0]["value"] = "9990000019"
    (src / "bad-transaction.json").write_text(json.dumps(tx))
    (src / "notes.txt").write_text("ignored: not a known suffix")
    summary = await import_files(services, "health", [src])
    by_file: dict[str, set[int | None]] = {}
    for p in summary.problems:
        by_file.setdefault(Path(p.source or "").name, set()).add(p.row)
    assert by_file.pop("resources.ndjson") == {3, 4}
    refused = by_file.pop("bad-transaction.json")  # the bad Patient and every event of the transaction
    assert 0 in refused and len(refused) >= 4
    assert not by_file
    text = "\n".join(str(p) for p in summary.problems)
    assert "resources.ndjson:3: malformed JSON" in text
    assert "9990000019" not in text
    assert summary.rejected >= 3
    # JSON and XML copies of the same Bundles are the same events: duplicates, not new records
    assert summary.duplicates > 0
    health = await topic_records(services, "hub.ingest.health")
    assert len(health) == services.store.log_count() - len(
        await topic_records(services, "hub.ingest.consent")
    )
    assert len({r["meta"]["event_id"] + str(r["meta"]["source_version"]) for r in health}) == len(health)

    again = await import_files(services, "health", [src])
    assert again.accepted == 0 and again.duplicates == summary.accepted + summary.duplicates


async def test_import_csv_in_chunks_keeps_good_rows(services: Services, tmp_path: Path) -> None:
    big = tmp_path / "big.csv"
    _big_csv(big, 1200)
    seen: list[int] = []
    summary = await import_files(
        services,
        "education",
        [big, FIXTURES / "education/send-events.csv"],
        chunk=500,
        on_chunk=lambda s: seen.append(len(s.results)),
    )
    assert summary.accepted == 1206 and summary.rejected == 2
    assert len(seen) >= 3  # published in chunks
    assert {(Path(p.source or "").name, p.row) for p in summary.problems} == {
        ("send-events.csv", 7),
        ("send-events.csv", 8),
    }
    assert len(await topic_records(services, "hub.ingest.education")) == 1206


async def test_events_failing_avro_preparation_are_rejected_rows(services: Services) -> None:
    def event(source_id: str, **body: Any) -> InboundEvent:
        service = {
            "agency_id": "7A6",
            "agency_name": "ABUHB",
            "sector": "health",
            "service_code": "SLT",
            "service_name": "SLT",
        }
        return InboundEvent(
            record_type="AppointmentBooked",
            sector="health",
            source_system="pas",
            source_id=source_id,
            occurred_at=datetime(2026, 1, 5, tzinfo=UTC),
            subject=SubjectRef("nhs-number", "9990000018"),
            body={"service": service, "start": datetime(2026, 2, 1, tzinfo=UTC), **body},
        )

    results = [
        RecordResult(1, event("a")),
        RecordResult(2, event("b", contact_type="maybe")),
        RecordResult(3, None, (Problem("x", "bad", 3),)),
        RecordResult(4),
    ]
    summary = await accept_results(services.ingest, results)
    assert (summary.accepted, summary.rejected, summary.ignored, summary.status_code) == (1, 2, 1, 207)
    assert {p.row for p in summary.problems} == {2, 3}
    assert "AppointmentBooked" in next(p.detail for p in summary.problems if p.row == 2)
    atomic = await accept_results(services.ingest, [RecordResult(1, event("c")), results[1]], atomic=True)
    assert (atomic.accepted, atomic.rejected, atomic.status_code) == (0, 2, 422)
    assert services.store.log_count() == 1


def test_cli_import_prints_line_numbered_errors_and_summary(
    empty_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    broker = EmbeddedBroker().start()
    try:
        env = {
            "HUB_DATA_DIR": str(tmp_path / "data"),
            "HUB_DATABASE_URL": empty_db_url,
            "HUB_PSEUDONYM_KEY": "k" * 32,
            "HUB_SCHEMA_DIR": str(ROOT / "schemas"),
        }
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        monkeypatch.delenv("HUB_KAFKA_BOOTSTRAP", raising=False)
        runner = CliRunner()
        csv = str(FIXTURES / "social_care/newport-events.csv")
        no_broker = runner.invoke(cli_app, ["ingest", "social-care", csv])
        assert no_broker.exit_code == 2 and "no broker is running" in no_broker.output

        monkeypatch.setenv("HUB_KAFKA_BOOTSTRAP", broker.bootstrap)
        monkeypatch.setenv("HUB_KAFKA_EMBEDDED", "true")
        asyncio.run(ensure_topics(Settings()))
        assert runner.invoke(cli_app, ["migrate"]).exit_code == 0  # a configured database: only `hub migrate` migrates
        result = runner.invoke(cli_app, ["ingest", "social-care", csv])
        assert result.exit_code == 1, result.output
        assert "social-care: 6 accepted, 0 duplicates, 4 rejected" in result.output
        assert (
            "newport-events.csv:7: nhs_number: nhs-number identifier fails the modulus-11 check"
            in result.output
        )
        assert "newport-events.csv:11:" in result.output and "1234567890" not in result.output

        good = runner.invoke(
            cli_app, ["ingest", "education", str(FIXTURES / "education/ehc-plan-issued.json")]
        )
        assert good.exit_code == 0 and "1 accepted, 0 duplicates, 0 rejected" in good.output
        again = runner.invoke(
            cli_app, ["ingest", "education", str(FIXTURES / "education/ehc-plan-issued.json")]
        )
        assert again.exit_code == 0 and "0 accepted, 1 duplicates" in again.output

        mapping = json.loads((ROOT / "connectors/mappings/education/mis-generic.json").read_text())
        mapping.update(name="my-mis", source_system="my-mis")
        (tmp_path / "my-mis.json").write_text(json.dumps(mapping))
        custom = runner.invoke(
            cli_app,
            [
                "ingest",
                "education",
                "--mapping",
                str(tmp_path / "my-mis.json"),
                str(FIXTURES / "education/ehc-plan-issued.json"),
            ],
        )
        assert custom.exit_code == 0 and "1 accepted" in custom.output  # another source system: new event
        broken = runner.invoke(
            cli_app,
            [
                "ingest",
                "education",
                "--mapping",
                str(tmp_path / "nope.json"),
                str(FIXTURES / "education/ehc-plan-issued.json"),
            ],
        )
        assert broken.exit_code == 2 and "nope.json" in broken.output
    finally:
        broker.stop()
