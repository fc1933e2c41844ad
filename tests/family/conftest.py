"""The API fixtures (a real app over ASGI on a fresh broker, SQLite and PostgreSQL) for the family tests."""

from tests.api.conftest import client, services  # noqa: F401 - fixtures used by name
