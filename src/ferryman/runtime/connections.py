"""A service's connections, opened on first use: broker, admin, producer, registry, codecs."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ferryman.broker import EmbeddedLocation, open_broker
from ferryman.broker.base import Admin, Broker, Producer
from ferryman.config import Locations, make_directory_for
from ferryman.errors import TopicMismatch
from ferryman.observability.metrics import NO_METRICS, Observer
from ferryman.observability.tracing import Tracing
from ferryman.records import TopicSpec
from ferryman.runtime.serde import Serde


class Connections:
    """Owns what it opens (and only that); thread-safe, since blocking calls come from threads."""

    def __init__(
        self,
        locations: Locations,
        broker: Broker | None,
        registry: Any | None,
        producer_config: Mapping[str, str] | None = None,
    ) -> None:
        self.locations = locations
        self._producer_config = dict(producer_config or {})
        self._broker = broker
        self._owns_broker = broker is None
        self._registry = registry
        self._owns_registry = registry is None
        self._admin: Admin | None = None
        self._producer: Producer | None = None
        self._rpc_producer: Producer | None = None
        self._serde: Serde | None = None
        self._created: set[str] = set()
        self._lock = threading.RLock()
        self.metrics: Observer = NO_METRICS  # the service's, set by it (observability/)
        self.tracing: Tracing | None = None  # None: no opentelemetry-api, or switched off

    @property
    def broker(self) -> Broker:
        with self._lock:
            if self._broker is None:
                where = self.locations.broker
                if isinstance(where, EmbeddedLocation):
                    make_directory_for(where.path, "embedded broker file")
                self._broker = open_broker(where)
            return self._broker

    def embedded(self) -> bool:
        """Whether the broker is the embedded one: an opened broker given to the service tells
        by its type (its locations then come from the environment, not from it)."""
        with self._lock:
            broker = self._broker
        if broker is None:
            return isinstance(self.locations.broker, EmbeddedLocation)
        from ferryman.broker.embedded.broker import EmbeddedBroker

        return isinstance(broker, EmbeddedBroker)

    @property
    def admin(self) -> Admin:
        with self._lock:
            if self._admin is None:
                self._admin = self.broker.admin()
            return self._admin

    @property
    def producer(self) -> Producer:
        """The producer for entities and events: batches (the backend's linger) for throughput."""
        producer = self._producer
        if producer is None:
            with self._lock:
                if self._producer is None:
                    self._producer = self.broker.producer(self._producer_config or None)
                producer = self._producer
        return producer

    @property
    def rpc_producer(self) -> Producer:
        """The producer for requests, receipts and replies: sends at once (``linger.ms=0``),
        because a caller waits on each round trip; opened only by services that use rpc.

        Kafka's default linger of 5 ms, paid by both the request and the reply, tripled the
        round trip on a local broker. An explicit ``linger.ms`` in the producer config wins.
        """
        producer = self._rpc_producer
        if producer is None:
            with self._lock:
                if self._rpc_producer is None:
                    config = {"linger.ms": "0", **self._producer_config}
                    self._rpc_producer = self.broker.producer(config)
                producer = self._rpc_producer
        return producer

    def flush(self, timeout: float | None = None) -> int:
        """Wait for every record queued on either producer; returns how many are still queued."""
        left = self.producer.flush(timeout)
        if self._rpc_producer is not None:
            left += self._rpc_producer.flush(timeout)
        return left

    @property
    def registry(self) -> Any:
        with self._lock:
            if self._registry is None:
                from ferryman.schema.open import open_registry

                url = self.locations.registry
                if url.startswith("embedded:"):
                    make_directory_for(Path(url[len("embedded:") :]), "schema registry file")
                self._registry = open_registry(url)
            return self._registry

    @property
    def serde(self) -> Serde:
        serde = self._serde
        if serde is None:
            with self._lock:
                if self._serde is None:
                    from ferryman.schema.avro import AvroCodec

                    registry = self.registry
                    self._serde = Serde(
                        lambda model, compat: AvroCodec(model, registry, compatibility=compat)
                    )
                serde = self._serde
        return serde

    def created(self, topic: str) -> bool:
        """Whether ``ensure_topics`` made sure ``topic`` exists (with the rest of its specs)."""
        return topic in self._created

    def ensure_topics(self, specs: list[TopicSpec]) -> None:
        """Create the topics that do not exist yet; an existing one must match its declaration."""
        missing = [s for s in specs if s.name not in self._created]
        if not missing:
            return
        with self._lock:
            for spec in missing:
                if spec.name in self._created:
                    continue
                try:
                    self.admin.create_topic(spec, exist_ok=True)
                except TopicMismatch as exc:
                    raise TopicMismatch(
                        f"{exc}. The topic {spec.name!r} exists with another shape than declared "
                        f"(partitions={spec.partitions}, config={spec.config}); change the "
                        "declaration to match it, or migrate the topic"
                    ) from exc
                self._created.add(spec.name)

    def close(self) -> None:
        with self._lock:
            for producer in (self._producer, self._rpc_producer):
                if producer is not None:
                    producer.close()
            self._producer = self._rpc_producer = None
            if self._admin is not None:
                self._admin.close()
                self._admin = None
            if self._owns_registry and self._registry is not None:
                close = getattr(self._registry, "close", None)
                if close is not None:
                    close()
                self._registry = None
            if self._owns_broker and self._broker is not None:
                self._broker.close()
                self._broker = None
