"""Opening a database: an engine for a URL, checked before use (SQLite in WAL mode with a busy timeout)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from hub.core.errors import ConfigError


def first_line(exc: SQLAlchemyError) -> str:
    """The first line of a database error (the driver's own message, without SQLAlchemy's background)."""
    return str(getattr(exc, "orig", None) or exc).splitlines()[0]


def make_engine(url: str) -> Engine:
    """An engine for the URL, checked: a bad path or unreachable server is a ConfigError."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            probe = path.parent / f".write-probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(f"database path {path} is not writable: {exc.strerror or exc}") from exc
    try:
        engine = sa.create_engine(url, future=True, pool_pre_ping=True)
    except Exception as exc:
        raise ConfigError(f"database URL is not usable: {exc}") from exc
    if engine.dialect.name == "sqlite":
        @sa_event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
    except SQLAlchemyError as exc:
        raise ConfigError(f"cannot open the database ({engine.url.render_as_string(hide_password=True)}): "
                          f"{first_line(exc)}") from exc
    return engine
