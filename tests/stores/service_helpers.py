"""Shared pieces of the tests that drive the outbox through a Service: a world (broker, registry,
database) per backend, models, and reading a topic back decoded."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

import ferryman as fm
from ferryman.broker import open_broker
from ferryman.config import ServiceConfig
from ferryman.records import Record
from ferryman.runtime.headers import MESSAGE_ID, SOURCE
from ferryman.stores import Database

from .outbox_helpers import read_all


@dataclass
class Customer:
    id: int
    name: str
    email: str | None = None


@dataclass
class Noted:
    id: int
    text: str


@dataclass
class World:
    """One test's broker, registry and database; services made here are theirs."""

    broker: str
    registry: str
    database: str
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def service(self, name: str, **config: Any) -> fm.Service:
        return fm.Service(
            f"{name}-{self.suffix}",
            broker=self.broker,
            registry=self.registry,
            database=self.database,
            config=replace(ServiceConfig(shutdown_timeout=10), **config),
        )

    def topic(self, prefix: str) -> str:
        return f"{prefix}.{self.suffix}.{uuid.uuid4().hex[:6]}"

    def read(self, topic: str, expect: int, timeout: float = 30.0) -> list[Record]:
        """At least ``expect`` records of ``topic`` from its start (more if there are)."""
        broker = open_broker(self.broker)
        try:
            return read_all(broker, topic, expect, timeout)
        finally:
            broker.close()

    def count(self, topic: str) -> int:
        """Records on ``topic`` now (0 when it does not exist)."""
        broker = open_broker(self.broker)
        try:
            admin = broker.admin()
            if topic not in admin.list_topics():
                return 0
            return sum(o.latest - o.earliest for o in admin.offsets(topic).values())
        finally:
            broker.close()


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def world(request: pytest.FixtureRequest, tmp_path: Path, database_url: str) -> World:
    """A World per broker backend and per database (``database_url``)."""
    registry = f"embedded:{tmp_path / 'registry.db'}"
    if request.param == "kafka":
        broker = f"kafka://{request.getfixturevalue('kafka_bootstrap')}"
    else:
        broker = f"embedded:{tmp_path / 'broker.db'}"
    return World(broker, registry, database_url)


@pytest.fixture
def embedded_world(tmp_path: Path, database_url: str) -> World:
    """A World on the embedded broker, per database."""
    return World(
        f"embedded:{tmp_path / 'broker.db'}", f"embedded:{tmp_path / 'registry.db'}", database_url
    )


@pytest.fixture
def user_db(database_url: str) -> Iterator[Database]:
    """The user's own handle on the service's database (their engine, their sessions)."""
    db = Database(database_url)
    yield db
    db.dispose()


def header(record: Record, name: str) -> bytes | None:
    return next((v for k, v in record.headers if k == name), None)


def ids_and_sources(records: list[Record]) -> tuple[set[bytes | None], set[bytes | None]]:
    return {header(r, MESSAGE_ID) for r in records}, {header(r, SOURCE) for r in records}
