"""Every stores test runs once on SQLite and once on PostgreSQL, through ``database_url``
(tests/conftest.py): the ``postgres`` run skips locally and fails in CI without a server, and
each test gets a fresh schema of its own, so tests never see each other's tables."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ferryman.stores import Database


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """A Database on ``database_url``, its connections closed after the test."""
    db = Database(database_url)
    yield db
    db.dispose()
