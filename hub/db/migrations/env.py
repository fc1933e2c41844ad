"""Alembic environment: runs on the connection handed over by ``hub.db.store.migrate``, or on HUB_DATABASE_URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from hub.db.schema import metadata

config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        from hub.core.settings import Settings

        engine = create_engine(Settings().effective_database_url)
        with engine.begin() as conn:
            context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
            context.run_migrations()
        return
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run()
