"""Only `hub migrate` changes a configured database's schema; every other process checks it and refuses.

What an operator sees when the migrate Job has not run (or a newer hub migrated the database): the
process stops with one line saying what to do, and leaves the database as it found it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from hub.cli.main import app
from hub.core.errors import DatabaseSchemaBehindError
from hub.db.store import Store, migrate

ROOT = Path(__file__).resolve().parents[2]


def tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def revision(url: str) -> str | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("select version_num from alembic_version")).scalar()
    finally:
        engine.dispose()


def env_for(url: str, tmp_path: Path) -> dict[str, str]:
    return {"HUB_DATABASE_URL": url, "HUB_DATA_DIR": str(tmp_path / "data"), "HUB_LOG_LEVEL": "WARNING",
            "HUB_PSEUDONYM_KEY": "k" * 32}


def test_a_configured_empty_database_is_refused_and_left_empty(empty_db_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    for command in (["dlq", "list"], ["audit", "verify"], ["keys", "rewrap"]):
        result = runner.invoke(app, command, env=env_for(empty_db_url, tmp_path))
        assert result.exit_code == 2, (command, result.output)
        assert "holds no hub schema" in result.output and "run `hub migrate`" in result.output
    assert tables(empty_db_url) == set()
    with pytest.raises(DatabaseSchemaBehindError, match=r"run `hub migrate` \(the migrate Job in Kubernetes\)"):
        Store.open(empty_db_url, migrate_schema=False)


def test_api_worker_and_deliverer_refuse_a_schema_behind_until_hub_migrate_runs(empty_db_url: str,
                                                                                tmp_path: Path) -> None:
    from alembic import command

    from hub.db.schema_version import alembic_config

    engine = sa.create_engine(empty_db_url)
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0017")
    engine.dispose()
    env = {**env_for(empty_db_url, tmp_path), "HUB_KAFKA_BOOTSTRAP": "127.0.0.1:9"}
    for process in (["api"], ["worker"], ["deliver"]):  # what the Deployments run
        done = subprocess.run([sys.executable, "-m", "hub.cli", *process], env={"PATH": "/usr/bin:/bin", **env},
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, (process, done.stderr[-2000:])
        assert "schema is at revision 0017, behind" in done.stderr and "run `hub migrate`" in done.stderr, process
    assert revision(empty_db_url) == "0017"  # untouched

    done = CliRunner().invoke(app, ["migrate"], env=env_for(empty_db_url, tmp_path))
    assert done.exit_code == 0 and "latest schema" in done.output
    Store.open(empty_db_url, migrate_schema=False).engine.dispose()  # now accepted


def test_a_schema_from_a_newer_hub_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    engine = sa.create_engine(url)
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("update alembic_version set version_num = '0099'"))
    engine.dispose()
    result = CliRunner().invoke(app, ["dlq", "list"], env=env_for(url, tmp_path))
    assert result.exit_code == 2
    assert "revision 0099, which this hub does not know" in result.output


def test_the_hubs_own_sqlite_file_is_migrated_by_any_command(tmp_path: Path) -> None:
    env = {"HUB_DATA_DIR": str(tmp_path / "data"), "HUB_LOG_LEVEL": "WARNING"}
    result = CliRunner().invoke(app, ["dlq", "list"], env=env)
    assert result.exit_code == 0, result.output
    assert "ingest_log" in tables(f"sqlite:///{tmp_path / 'data' / 'hub.db'}")
