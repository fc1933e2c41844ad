"""The HTTP fixtures of tests/api (a fresh embedded broker per test, SQLite and PostgreSQL)."""

from tests.api.conftest import client, services

__all__ = ("client", "services")
