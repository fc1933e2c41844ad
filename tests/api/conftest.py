"""Fixtures for the HTTP ingest tests: a fresh embedded broker per test, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from hub.api.app import create_app
from hub.core.settings import Settings
from hub.governance.auth import TokenService
from hub.ingest.services import Services
from hub.kafka.broker import EmbeddedBroker
from hub.kafka.topics import ensure_topics

ROOT = Path(__file__).resolve().parents[2]


async def _services(db_url: str, tmp_path: Path, **overrides: object) -> tuple[EmbeddedBroker, Services]:
    broker = EmbeddedBroker().start()
    settings = Settings(
        kafka_bootstrap=broker.bootstrap,
        kafka_embedded=True,
        database_url=db_url,
        data_dir=tmp_path / "data",
        schema_dir=ROOT / "schemas",
        pseudonym_key="k" * 32,
        **overrides,
    )  # type: ignore[arg-type]
    await ensure_topics(settings)
    svc = Services.build(settings)
    await svc.start()
    return broker, svc


@pytest.fixture
async def services(db_url: str, tmp_path: Path) -> AsyncIterator[Services]:
    broker, svc = await _services(db_url, tmp_path)
    yield svc
    await svc.stop()
    svc.store.engine.dispose()
    broker.stop()


@pytest.fixture
async def client(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """The real app over ASGI; the publisher is started by the ``services`` fixture (no lifespan)."""
    app = create_app(services)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test",
                                 headers=token_header(services, "agency", "abuhb-pas", agency="7A6")) as c:
        c.hub_app = app  # type: ignore[attr-defined]  # for tests that run its background jobs pass by pass
        yield c


def token_header(services: Services, role: str, subject: str, **claims: str) -> dict[str, str]:
    """A bearer token the app under test accepts (signed with its own key)."""
    token = TokenService(services.settings).create(subject, role, **claims)  # type: ignore[arg-type]
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def small_client(sqlite_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An app with a 2 KiB body limit."""
    broker, svc = await _services(sqlite_url, tmp_path, max_body_bytes=2048)
    app = create_app(svc)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test",
                                 headers=token_header(svc, "agency", "abuhb-pas", agency="7A6")) as c:
        yield c
    await svc.stop()
    svc.store.engine.dispose()
    broker.stop()
