"""Fixtures for connector tests."""

from __future__ import annotations

import pytest
from connector_helpers import FIXTURES


@pytest.fixture
def fixture_bytes():
    def read(name: str) -> bytes:
        return (FIXTURES / name).read_bytes()

    return read
