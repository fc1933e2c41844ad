"""The database schema's version: Alembic migrations up to the latest revision, and the check that refuses
a database not at it (every process but `hub migrate` on a configured database)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from hub.core.errors import DatabaseSchemaBehindError

__all__ = ["alembic_config", "check_schema", "migrate"]


def alembic_config() -> Any:
    """Alembic's configuration for the hub's migrations (``hub/db/migrations``)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the latest Alembic revision."""
    from alembic import command

    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def check_schema(engine: Engine) -> None:
    """Refuse a database whose schema is not at this hub's latest revision; change nothing.

    Only ``hub migrate`` (the migrate Job of a deployment) changes a shared database's schema; every
    other process checks here and stops with what to do.
    """
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    heads = set(script.get_heads())
    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    if current == heads:
        return
    where = engine.url.render_as_string(hide_password=True)
    need = ", ".join(sorted(heads))
    if not current:
        raise DatabaseSchemaBehindError(
            f"the database ({where}) holds no hub schema; this hub needs revision {need}: run `hub migrate` "
            "(the migrate Job in Kubernetes) before starting it")
    known = {rev.revision for rev in script.walk_revisions()}
    have = ", ".join(sorted(current))
    if current <= known:
        raise DatabaseSchemaBehindError(
            f"the database ({where}) schema is at revision {have}, behind the {need} this hub needs: "
            "run `hub migrate` (the migrate Job in Kubernetes) before starting it")
    raise DatabaseSchemaBehindError(
        f"the database ({where}) schema is at revision {have}, which this hub does not know (it needs {need}): "
        "a newer hub migrated it; run that version")
