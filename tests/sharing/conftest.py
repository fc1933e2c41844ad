"""Fixtures shared by the sharing tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from hub.db.store import Store


@pytest.fixture
def counted(db_url: str) -> Iterator[tuple[Store, list[str]]]:
    """A store on a fresh database, and every statement it sends from then on."""
    store = Store.open(db_url)
    statements: list[str] = []
    sa.event.listen(store.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    yield store, statements
    store.engine.dispose()
