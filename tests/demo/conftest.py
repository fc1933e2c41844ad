"""The API fixtures (a real app over ASGI on a fresh broker, SQLite and PostgreSQL) for the demo's acts."""

from tests.api.conftest import services  # noqa: F401 - fixtures used by name
