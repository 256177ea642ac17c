"""The database fixtures: every stores test runs once on SQLite and once on PostgreSQL.

``sqlite`` always runs (a fresh file per test); ``postgres`` needs a running server
(``postgres_url`` skips locally and fails in CI without one) and carries the ``postgres``
marker. The server is shared, so each test gets a fresh schema of its own (its URL sets the
``search_path``), dropped afterwards: tests never see each other's tables.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from ferryman.stores import Database


@pytest.fixture(scope="session")
def postgres_admin(postgres_url: str) -> Iterator[Engine]:
    """An engine on the test server for creating and dropping the per-test schemas."""
    engine = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An SQLAlchemy URL of an empty database: an SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'service.db'}"
        return
    admin: Engine = request.getfixturevalue("postgres_admin")
    server: str = request.getfixturevalue("postgres_url")
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(server).update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """A Database on ``database_url``, its connections closed after the test."""
    db = Database(database_url)
    yield db
    db.dispose()
