"""Shared fixtures: a real embedded broker per test session, real SQLite and PostgreSQL databases.

``sqlite_url``, ``pg_url`` and ``db_url`` are fresh databases already at the latest schema revision: each
test process migrates one database of each kind once, through the hub's migrations, and every test gets a
copy of it (a file copy for SQLite, ``CREATE DATABASE ... TEMPLATE`` for PostgreSQL) instead of running the
migrations again. A test about migrating or about an empty database asks for ``empty_sqlite_url``,
``empty_pg_url`` or ``empty_db_url``.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from hub.core.logging import configure_logging
from hub.core.settings import Settings
from hub.db.store import Store
from hub.kafka.broker import EmbeddedBroker

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("HUB_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(autouse=True)
def hub_logging() -> None:
    """Each test starts with the hub's own log pipeline on standard output, as its processes run, so
    a test that redirects the logs (or runs a command that sets them up) cannot change another's."""
    configure_logging()


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    b = EmbeddedBroker().start()
    yield b
    b.stop()


@pytest.fixture
def empty_sqlite_url(tmp_path: Path) -> str:
    """A SQLite database that does not exist yet (the hub creates the file)."""
    return f"sqlite:///{tmp_path / 'hub.db'}"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file migrated to the latest revision by the hub's migrations, for this test process."""
    path = tmp_path_factory.mktemp("sqlite-template") / "hub.db"
    Store.open(f"sqlite:///{path}").engine.dispose()  # the last connection closed: the WAL is checkpointed
    assert not path.with_name("hub.db-wal").exists()
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """A fresh SQLite database at the latest schema revision (a copy of the process's migrated file)."""
    target = tmp_path / "hub.db"
    shutil.copyfile(sqlite_template, target)
    return f"sqlite:///{target}"


@pytest.fixture(scope="session")
def pg_server() -> str:
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
    except Exception as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
    finally:
        engine.dispose()
    return PG_ADMIN_URL


@contextmanager
def _pg_database(server: str, template: str | None = None) -> Iterator[str]:
    """A new PostgreSQL database (empty, or a copy of ``template``), dropped on leaving."""
    name = f"hubtest_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'create database "{name}"' + (f' template "{template}"' if template else "")))
    try:
        yield server.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'drop database if exists "{name}" with (force)'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_template(pg_server: str) -> Iterator[str]:
    """The name of a PostgreSQL database migrated to the latest revision by the hub's migrations, for this
    test process; nothing else connects to it, so it can be copied."""
    with _pg_database(pg_server) as url:
        Store.open(url).engine.dispose()
        yield url.rsplit("/", 1)[1]


@pytest.fixture
def empty_pg_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    with _pg_database(pg_server) as url:
        yield url


@pytest.fixture
def pg_url(pg_server: str, pg_template: str) -> Iterator[str]:
    """A fresh PostgreSQL database at the latest schema revision for one test (a copy of the process's
    migrated database), dropped afterwards."""
    with _pg_database(pg_server, pg_template) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh database at the latest schema revision, once on SQLite and once on PostgreSQL."""
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty database (no schema), once on SQLite and once on PostgreSQL."""
    return str(request.getfixturevalue("empty_sqlite_url" if request.param == "sqlite" else "empty_pg_url"))


@pytest.fixture
def settings(tmp_path: Path, broker: EmbeddedBroker) -> Settings:
    """Settings for in-process tests against the session broker, with fresh topic names per test."""
    return Settings(kafka_bootstrap=broker.bootstrap, kafka_embedded=True, data_dir=tmp_path / "data",
                    schema_dir=ROOT / "schemas", pseudonym_key="test-key-0123456789abcdef")
