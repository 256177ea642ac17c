"""The broker under test: every contract test takes the ``backend`` fixture, once per backend.

``embedded`` always runs (a fresh SQLite file per test); ``kafka`` needs a running cluster named
by ``FERRYMAN_TEST_KAFKA`` (skipped without one, a failure under ``CI=true``) and carries the
``kafka`` marker. The cluster is shared, so every topic and group name gets a unique suffix.
A third-party backend runs the suite alone with ``FERRYMAN_CONTRACT_BACKEND=module:factory``,
``factory(directory)`` returning its Broker (see ``ferryman.testing.contract``).

Kafka needs broker settings that make cleaning observable within a test:
``log.retention.check.interval.ms`` and ``log.cleaner.backoff.ms`` of a second or less
(``scripts/kafka.sh`` sets them).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from ferryman.broker import open_broker
from ferryman.broker.base import Admin, Broker, Consumer, OffsetReset, Producer
from ferryman.broker.embedded.broker import EmbeddedBroker
from ferryman.records import Record, TopicPartition, TopicSpec
from ferryman.testing.contract.helpers import POLL, assert_increasing, by_partition, partitions_of
from ferryman.testing.waiting import wait_until

CUSTOM = "FERRYMAN_CONTRACT_BACKEND"
"""``module:factory`` of a third-party backend: ``factory(directory: Path) -> Broker``."""
KAFKA = "FERRYMAN_TEST_KAFKA"

FILLER_KEY = b"__contract.roll__"
"""Key of the records the Kafka cleaner trigger appends; tests that read a cleaned log skip it."""

FAST_SESSION = {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"}
"""Member liveness settings both backends honour; 6 s is Kafka's default minimum session timeout."""


@dataclass
class Backend:
    """One broker under test, with the clients a test opened (closed at teardown)."""

    name: str
    url: str | None
    """What ``open_broker`` opens in another process (None: the backend cannot be shared)."""
    broker: Broker
    join_timeout: float
    """Deadline for group joins and rebalances (Kafka's are slow)."""
    clean_timeout: float
    """Deadline for cleaning (compaction, retention) to become visible."""
    _admin: Admin | None = None
    _clients: list[Producer | Consumer] = field(default_factory=list)
    _topics: list[str] = field(default_factory=list)

    def shared_url(self) -> str:
        """The URL that another process opens this broker by; skips a backend that has none."""
        if self.url is None:
            pytest.skip(f"backend {self.name!r} has no URL that another process can open")
        return self.url

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
        elif isinstance(self.broker, EmbeddedBroker):
            self.broker.clean()
        else:  # a third-party backend: its own synchronous cleaner pass, if it has one
            clean = getattr(self.broker, "clean", None)
            if callable(clean):
                clean()

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


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _custom_factory(target: str) -> Callable[[Path], Broker]:
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise pytest.UsageError(
            f"{CUSTOM}={target!r}: name the factory as module:function, "
            "e.g. mybackend.testing:open_test_broker"
        )
    factory = getattr(importlib.import_module(module), attr, None)
    if not callable(factory):
        raise pytest.UsageError(f"{CUSTOM}={target!r}: {attr!r} is not a function of {module!r}")
    return cast("Callable[[Path], Broker]", factory)


def backend_names() -> list[Any]:
    """The backends the suite runs on: a third party's alone, or embedded and Kafka."""
    custom = os.environ.get(CUSTOM, "").strip()
    if custom:
        return [pytest.param(custom, id=custom.rpartition(":")[2])]
    return ["embedded", pytest.param("kafka", marks=pytest.mark.kafka)]


def open_backend(name: str, directory: Path) -> Backend:
    """The backend called ``name`` (embedded, kafka, or a ``module:factory``), fresh."""
    if name == "kafka":
        bootstrap = os.environ.get(KAFKA, "").strip()
        if not bootstrap:
            reason = f"Apache Kafka is not available: set {KAFKA} (`scripts/kafka.sh start`)"
            if _in_ci():
                pytest.fail(f"CI=true but {reason}", pytrace=False)
            pytest.skip(reason)
        url = "kafka://" + bootstrap
        return Backend(name, url, open_broker(url), join_timeout=90.0, clean_timeout=180.0)
    if name == "embedded":
        url = "embedded:" + str(directory / "broker.db")
        return Backend(name, url, open_broker(url), join_timeout=30.0, clean_timeout=30.0)
    broker = _custom_factory(name)(directory)
    return Backend(name, None, broker, join_timeout=60.0, clean_timeout=60.0)


@pytest.fixture(params=backend_names())
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    b = open_backend(request.param, tmp_path)
    try:
        yield b
    finally:
        b.close()
