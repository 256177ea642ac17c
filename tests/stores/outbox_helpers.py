"""Shared pieces of the outbox, relay and poller tests: a broker per backend, reading a topic
back, and waiting on a condition with a deadline."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest

from ferryman.broker import open_broker
from ferryman.broker.base import Broker
from ferryman.broker.embedded import EmbeddedBroker
from ferryman.records import Headers, Record, RecordMetadata, TopicPartition, TopicSpec


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Return once ``condition()`` holds; fail after ``timeout`` seconds saying ``what``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    """A broker per backend: an EmbeddedBroker file in tmp_path, or the test Kafka."""
    if request.param == "embedded":
        broker: Broker = EmbeddedBroker(tmp_path / "broker.db", cleaner_interval=None)
    else:
        broker = open_broker(f"kafka://{request.getfixturevalue('kafka_bootstrap')}")
    yield broker
    broker.close()


def new_topic(broker: Broker, partitions: int) -> str:
    """A topic with a unique name (the Kafka cluster is shared)."""
    name = f"outbox.{uuid.uuid4().hex[:12]}"
    broker.admin().create_topic(TopicSpec(name, partitions))  # the broker closes its admin
    return name


def read_all(broker: Broker, topic: str, expect: int, timeout: float = 30.0) -> list[Record]:
    """At least ``expect`` records of ``topic`` (every partition from its start), in offset order
    per partition; fails at the deadline."""
    partitions = len(broker.admin().offsets(topic))
    reader = broker.consumer(None)
    reader.assign([TopicPartition(topic, p) for p in range(partitions)])
    got: list[Record] = []

    def enough() -> bool:
        got.extend(reader.poll(0.1))
        return len(got) >= expect

    try:
        wait_until(enough, timeout, f"{expect} records on {topic} (have {len(got)})")
        got.extend(reader.poll(0.2))  # anything beyond: duplicates must show
    finally:
        reader.close()
    return got


class FailingProducer:
    """Wraps a producer; the ``fail_at``-th send (0-based) fails as an unacknowledged record."""

    def __init__(self, inner: object, fail_at: int) -> None:
        self.inner = inner
        self.fail_at = fail_at
        self.sent = 0

    def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Headers = (),
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> Future[RecordMetadata]:
        n = self.sent
        self.sent += 1
        if n == self.fail_at:
            failed: Future[RecordMetadata] = Future()
            failed.set_exception(RuntimeError("not acknowledged"))
            return failed
        send = self.inner.send  # type: ignore[attr-defined]
        result: Future[RecordMetadata] = send(
            topic, value, key=key, headers=headers, partition=partition, timestamp=timestamp
        )
        return result
