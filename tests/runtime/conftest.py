"""Fixtures for runtime tests: a backend (embedded always, Kafka when available) and helpers.

Waiting is ``tests.waiting`` (``eventually`` in async test bodies).

Every test gets unique topic and service names, so the Kafka cluster can be shared.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
from tests.waiting import wait_until

from ferryman.broker import open_broker
from ferryman.broker.base import Admin, Broker
from ferryman.config import ServiceConfig
from ferryman.records import Record, TopicPartition
from ferryman.service import Service

T = TypeVar("T")

FAST = ServiceConfig(commit_interval=0.05, backoff=0.01, backoff_max=0.05, shutdown_timeout=10)


@dataclass
class Env:
    """Where a test's services live, and the services it made (stopped at teardown)."""

    kind: str
    broker: str
    registry: str
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    timeout: float = 20.0

    def name(self, prefix: str) -> str:
        return f"{prefix}-{self.suffix}"

    @contextmanager
    def admin(self) -> Iterator[Admin]:
        """An admin client of this test's broker, to look at topics and offsets from outside."""
        broker = open_broker(self.broker)
        admin = broker.admin()
        try:
            yield admin
        finally:
            admin.close()
            broker.close()

    def service(self, name: str, **config: Any) -> Service:
        return Service(
            self.name(name),
            broker=self.broker,
            registry=self.registry,
            config=replace(FAST, **config),
        )


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    registry = f"embedded:{tmp_path / 'registry.db'}"
    if request.param == "kafka":
        bootstrap = request.getfixturevalue("kafka_bootstrap")
        yield Env("kafka", f"kafka://{bootstrap}", registry, timeout=60.0)
    else:
        yield Env("embedded", f"embedded:{tmp_path / 'broker.db'}", registry)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run an async test body."""
    return asyncio.run(coro)


def read(broker: Broker, topic: str, count: int, timeout: float) -> list[Record]:
    """The first ``count`` records of partition 0 of ``topic``, waiting up to ``timeout``."""
    consumer = broker.consumer(None)
    try:
        consumer.assign([TopicPartition(topic, 0)])
        got: list[Record] = []

        def enough() -> bool:
            got.extend(consumer.poll(0.1, count))
            return len(got) >= count

        wait_until(enough, timeout, lambda: f"{count} records in {topic}, got {len(got)}")
        return got
    finally:
        consumer.close()
