"""The backend fixture: every contract test runs once per backend.

``embedded`` always runs (a fresh SQLite file per test); ``kafka`` needs a running cluster
(``kafka_bootstrap`` skips locally and fails in CI without one) and carries the ``kafka`` marker.
The cluster is shared, so every topic and group name gets a unique suffix.

Kafka needs broker settings that make cleaning observable within a test:
``log.retention.check.interval.ms`` and ``log.cleaner.backoff.ms`` of a second or less
(``scripts/kafka.sh`` sets them).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.waiting import wait_until

from ferryman.broker import open_broker
from ferryman.broker.base import Admin, Broker, Consumer, OffsetReset, Producer
from ferryman.broker.embedded import EmbeddedBroker
from ferryman.records import Record, TopicPartition, TopicSpec

from .helpers import POLL, assert_increasing, by_partition, partitions_of

FILLER_KEY = b"__contract.roll__"
"""Key of the records the Kafka cleaner trigger appends; tests that read a cleaned log skip it."""

FAST_SESSION = {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"}
"""Member liveness settings both backends honour; 6 s is Kafka's default minimum session timeout."""


@dataclass
class Backend:
    """One broker under test, with the clients a test opened (closed at teardown)."""

    name: str
    url: str
    broker: Broker
    join_timeout: float
    """Deadline for group joins and rebalances (Kafka's are slow)."""
    clean_timeout: float
    """Deadline for cleaning (compaction, retention) to become visible."""
    _admin: Admin | None = None
    _clients: list[Producer | Consumer] = field(default_factory=list)
    _topics: list[str] = field(default_factory=list)

    @property
    def is_kafka(self) -> bool:
        return self.name == "kafka"

    @property
    def admin(self) -> Admin:
        if self._admin is None:
            self._admin = self.broker.admin()
        return self._admin

    def unique(self, prefix: str) -> str:
        return f"contract.{prefix}.{uuid.uuid4().hex[:12]}"

    def topic(
        self,
        partitions: int = 1,
        config: Mapping[str, str] | None = None,
        *,
        prefix: str = "t",
        cleanable: bool = False,
    ) -> str:
        """Create a topic with a unique name. ``cleanable`` adds Kafka's knobs for fast cleaning."""
        cfg = dict(config or {})
        if cleanable and self.is_kafka:
            cfg.setdefault("segment.ms", "100")
            cfg.setdefault("min.cleanable.dirty.ratio", "0.01")
        name = self.unique(prefix)
        self.admin.create_topic(TopicSpec(name, partitions, cfg))
        self._topics.append(name)
        return name

    def group(self) -> str:
        return self.unique("g")

    def producer(self) -> Producer:
        p = self.broker.producer()
        self._clients.append(p)
        return p

    def consumer(
        self,
        group_id: str | None,
        *,
        auto_offset_reset: OffsetReset = "earliest",
        config: Mapping[str, str] | None = None,
    ) -> Consumer:
        c = self.broker.consumer(group_id, auto_offset_reset=auto_offset_reset, config=config)
        self._clients.append(c)
        return c

    def read_all(self, topic: str) -> list[Record]:
        """Every record of ``topic`` from its log start to its current end, as received (checked to
        be in offset order per partition)."""
        ends = {p: o.latest for p, o in self.admin.offsets(topic).items()}
        reader = self.consumer(None)
        reader.assign(partitions_of(topic, len(ends)))
        got: list[Record] = []

        def at_end() -> bool:
            got.extend(reader.poll(POLL))
            return all(reader.position(TopicPartition(topic, p)) >= end for p, end in ends.items())

        wait_until(at_end, self.join_timeout, lambda: f"{len(got)} records read, ends {ends}")
        reader.close()
        for p, records in by_partition(got).items():
            assert_increasing([r.offset for r in records], f"{topic}[{p}]")
        return got

    def clean(self, topic: str) -> None:
        """Give the cleaner a chance to run over ``topic``; callers wait for the effect.

        Embedded: one synchronous cleaner pass. Kafka: only closed segments are cleaned, so
        append a filler record to every partition to roll the active segment.
        """
        if self.is_kafka:
            producer = self.broker.producer()
            try:
                for p in range(self.admin.describe_topic(topic).partitions):
                    producer.send(topic, b"", key=FILLER_KEY, partition=p)
            finally:
                producer.close(30.0)
        else:
            assert isinstance(self.broker, EmbeddedBroker)
            self.broker.clean()

    def close(self) -> None:
        for c in reversed(self._clients):
            with contextlib.suppress(Exception):  # a test may already have closed it
                c.close()
        if self.is_kafka:
            for t in self._topics:
                with contextlib.suppress(Exception):  # a test may already have deleted it
                    self.admin.delete_topic(t)
        if self._admin is not None:
            self._admin.close()
        self.broker.close()


@pytest.fixture(
    params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)],
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    name: str = request.param
    if name == "kafka":
        bootstrap: str = request.getfixturevalue("kafka_bootstrap")
        url = "kafka://" + bootstrap
        join, clean = 90.0, 180.0
    else:
        url = "embedded:" + str(tmp_path / "broker.db")
        join, clean = 30.0, 30.0
    b = Backend(name, url, open_broker(url), join_timeout=join, clean_timeout=clean)
    try:
        yield b
    finally:
        b.close()
