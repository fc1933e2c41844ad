"""Fixtures for the pages: the real app (API and pages) over ASGI with a real database, and signing in the
way people do, by following a one-time link and pressing its button."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.core.settings import Settings
from hub.db.keyvault import sealed_serde
from hub.governance.auth import Principal
from hub.ingest.services import Services
from hub.kafka.broker import EmbeddedBroker
from hub.kafka.topics import ensure_topics
from hub.pages import signin
from hub.pages.site import create_site
from hub.sharing.follower import Follower
from hub.stream import projection
from tests.sharing.sharing_support import deliver

ROOT = Path(__file__).resolve().parents[2]
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@asynccontextmanager
async def running_services(db_url: str, broker: EmbeddedBroker, tmp_path: Path,
                           **overrides: Any) -> AsyncIterator[Services]:
    """Services on the session's broker and a fresh SQLite database (the pages only read and record)."""
    settings = Settings(kafka_bootstrap=broker.bootstrap, kafka_embedded=True, database_url=db_url,
                        data_dir=tmp_path / "data", schema_dir=ROOT / "schemas", pseudonym_key="k" * 32,
                        **overrides)
    await ensure_topics(settings)
    svc = Services.build(settings)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()
        svc.store.engine.dispose()


@pytest.fixture
async def site_services(sqlite_url: str, broker: EmbeddedBroker, tmp_path: Path) -> AsyncIterator[Services]:
    async with running_services(sqlite_url, broker, tmp_path) as svc:
        yield svc


@pytest.fixture
async def both_databases(db_url: str, broker: EmbeddedBroker, tmp_path: Path) -> AsyncIterator[Services]:
    """As ``site_services``, once on SQLite and once on PostgreSQL."""
    async with running_services(db_url, broker, tmp_path) as svc:
        yield svc


def browser(services: Services) -> httpx.AsyncClient:
    """A client of the whole app over HTTPS (the session cookie is Secure), following no redirects."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_site(services)), base_url="https://hub.test")


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no form token"
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, services: Services, principal: Principal) -> None:
    token = signin.issue(services.store, principal, 15)
    page = await client.get(f"/sign-in/{token}")
    assert page.status_code == 200, page.text
    r = await client.post(f"/sign-in/{token}", data={"csrf": csrf_of(page.text)})
    assert r.status_code == 303, r.text


def project_logged(services: Services, after: int, now: datetime) -> int:
    """Do what the stream worker and its sharing follower do with what ingest logged after ``after``: decode,
    project (with the change feed), decide and deliver. Returns the last log position."""
    serde = sealed_serde(services.catalogue, services.settings, services.store)
    last = after
    for batch in services.store.iter_log(after_seq=after, batch=1000):
        decoded = []
        for rec in batch:
            d = serde.decode(rec.value)
            decoded.append((d.record_type, services.catalogue.writer(d.record_type).ce_type, d.record))
            last = rec.seq
        projection.apply(services.store, decoded)
    step = Follower(services.store, "pages-tests").step(now)
    assert step.held and not step.more
    deliver(services.store, now)
    return last
