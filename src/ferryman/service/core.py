"""The composition root: a Service wires the runtime, request/response and handlers together.

A Service composes: Connections (broker, registry, codecs, opened on first use), the handler
routes, a ConsumerLoop (started with the service when it has routes) and a Requester (started on
the first request); the database side is a ServiceData (service/data.py).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, NamedTuple, TypeVar, overload

from sqlalchemy import Connection, Table
from sqlalchemy.orm import Session

from ferryman.broker import KafkaLocation
from ferryman.broker.base import Broker
from ferryman.config import Locations, ServiceConfig, resolve_locations
from ferryman.errors import ConfigError
from ferryman.observability.health import Check
from ferryman.observability.metrics import NO_METRICS, Metrics, NoMetrics
from ferryman.observability.tracing import tracing_for
from ferryman.records import RecordMetadata, TopicPartition, TopicSpec
from ferryman.rpc.requester import PendingReply, Requester
from ferryman.rpc.responder import responder_route
from ferryman.runtime.connections import Connections
from ferryman.runtime.consumer import ConsumerLoop
from ferryman.runtime.dead_letters import dlq_spec
from ferryman.runtime.delivery import Delivery
from ferryman.runtime.encoding import (
    FROM_VALUE,
    EncodedRecord,
    declare_once,
    encode_record,
    expect_kind,
)
from ferryman.runtime.handlers import Route, handler_route
from ferryman.runtime.snapshot import Progress
from ferryman.service.data import ServiceData
from ferryman.service.observing import ServiceProbes
from ferryman.service.running import run_services
from ferryman.stores.database import Database
from ferryman.stores.joins import JoinedTable, KeyMap
from ferryman.stores.mirror import Mirror
from ferryman.stores.producing import OutboxWriter
from ferryman.stores.reconcile import Drift
from ferryman.stores.routes import MirrorLag, session_parameter
from ferryman.stores.tables import Transform
from ferryman.topics import EntityTopic, EventTopic, RequestTopic, Topic

T = TypeVar("T")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])


Role = Literal["produces", "requests", "handles", "mirrors", "responds"]
"""How a service uses a topic: sends to it (an entity or event topic), sends requests to it,
or consumes it with a handler, a mirror (or join part), or a responder."""


class TopicUse(NamedTuple):
    """One way a service uses a topic, as tools that read declarations see it (lint, docs)."""

    topic: Topic[Any]
    role: Role
    handler: str = ""
    """The handler's name, for a consuming role."""
    batch: int | None = None
    keeps_state: bool = False
    """The consumer keeps state in its database (a mirror, a join part, a session handler)."""


class Service:
    """A named service: publishes entities, emits events, handles topics, requests, responds."""

    def __init__(
        self,
        name: str,
        *,
        broker: str | Broker | None = None,
        registry: str | Any | None = None,
        database: str | None = None,
        config: ServiceConfig | None = None,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError("a Service needs a name, e.g. fm.Service('orders')")
        self.name = name
        self._source = name.encode()  # the ferryman.source header, once rather than per send
        self._send_names: dict[str, str] = {}  # topic -> what its Deliveries say in logs
        self.config = config or ServiceConfig()
        self.locations: Locations = resolve_locations(
            broker if isinstance(broker, str) else None,
            registry,
            database,
            service=name,
        )
        self.instance_id = f"{name}-{uuid.uuid4().hex[:12]}"
        self._conn = Connections(
            self.locations,
            None if isinstance(broker, str) else broker,
            None if isinstance(registry, str) else registry,
            self.config.producer_config,
        )
        self._routes: dict[str, Route] = {}
        self._topics: dict[str, Topic[Any]] = {}
        self._produces: dict[str, Topic[Any]] = {}
        self._responders: set[str] = set()
        self._consumer: ConsumerLoop | None = None
        self._last_consumer: ConsumerLoop | None = None
        self._requester: Requester | None = None
        self._stopped: asyncio.Event | None = None
        self._started = False
        self.failure: BaseException | None = None
        self._data = ServiceData(
            name,
            self.locations.database,
            self._conn,
            group=lambda: self.group,
            add_route=self._add_route,
            declare=self._declare,
            encode=self._encode,
            relay=self.config.relay,
            send=lambda topic, key, value: self._send(
                topic, value, FROM_VALUE if value is not None else key, None, None
            ),
        )
        self.metrics: Metrics | NoMetrics = (
            Metrics(name, self.config.metrics_registry) if self.config.metrics else NO_METRICS
        )
        """The service's Prometheus metrics (docs/operating.md); ``.registry`` holds them."""
        self._conn.metrics = self.metrics
        system = "kafka" if isinstance(self.locations.broker, KafkaLocation) else "ferryman"
        self._tracing = self._conn.tracing = tracing_for(
            name, system, self.config.tracing, self.config.tracer_provider
        )
        self._probes = ServiceProbes(
            name,
            self._conn,
            self._data,
            self.metrics,
            group=lambda: self.group,
            started=lambda: self._started,
            consuming=lambda: self._consumer is not None,
            polls=lambda: None if self._consumer is None else self._consumer.polls,
        )
        if isinstance(self.metrics, Metrics):
            self.metrics.probes = self._probes

    def __repr__(self) -> str:
        return f"Service({self.name!r}, broker={self.locations.broker!r})"

    @property
    def group(self) -> str:
        """The consumer group of this service's handlers (default: the service name)."""
        return self.config.group or self.name

    # -- declaring handlers ------------------------------------------------------------

    @overload
    def on(self, topic: Topic[T]) -> Callable[[F], F]: ...
    @overload
    def on(self, topic: Topic[T], *, batch: int) -> Callable[[F], F]: ...
    def on(self, topic: Topic[T], *, batch: int | None = None) -> Callable[[F], F]:
        """Handle ``topic``'s records: ``fn(value)``, or ``fn(values)`` with ``batch=N``."""

        def register(fn: F) -> F:
            session = session_parameter(fn)
            if session is not None:
                self._data.transactional_route(topic, fn, batch, session)
            else:
                self._add_route(handler_route(topic, fn, batch))
            return fn

        return register

    def responder(self, topic: RequestTopic[T, R]) -> Callable[[F], F]:
        """Answer ``topic``'s requests with the decorated function's return value."""
        if not isinstance(topic, RequestTopic):
            raise ConfigError(
                f"@responder needs a RequestTopic, got {topic!r}; use @on for entity and event topics"
            )

        def register(fn: F) -> F:
            self._add_route(responder_route(topic, fn, self._conn, self.name))
            self._responders.add(topic.name)
            return fn

        return register

    def _add_route(self, route: Route) -> None:
        name = route.topic.name
        self._declare(route.topic)
        if name in self._routes:
            raise ConfigError(
                f"service {self.name!r} already handles {name!r} with {self._routes[name].name}; "
                "a service has one handler per topic: do both things in one handler"
            )
        if self._started:
            raise ConfigError(f"service {self.name!r} is running: register handlers before start()")
        self._routes[name] = route

    # -- the service's database: mirrors and transactional handlers (stores) -------------

    @property
    def database(self) -> Database:
        """The service's own database (``database=`` / FERRYMAN_DATABASE; by default an SQLite
        file ``<service>.db`` beside the embedded broker): ``engine``, ``sessions``, ``metadata``."""
        return self._data.database

    def mirror(
        self,
        topic: Topic[Any],
        into: Any = None,
        *,
        table: str | None = None,
        rename: Mapping[str, str] | None = None,
        exclude: Collection[str] = (),
        transform: Transform | None = None,
        create_table: bool = True,
        fields: Sequence[str] | Mapping[str, str] | None = None,
        key: str | KeyMap | None = None,
        required: bool = True,
    ) -> Mirror | JoinedTable:
        """Keep entity ``topic`` as a table of the service's database, effectively once (see
        docs/stores.md); the table is created at start unless ``create_table=False``. With
        ``fields``, ``topic`` writes only those columns of ``into``'s row ``key`` (a field, or a
        function of the value; default the record key): a part of a join (docs/joins.md)."""
        return self._data.mirror(
            topic,
            into,
            table=table,
            rename=rename,
            exclude=exclude,
            transform=transform,
            create_table=create_table,
            fields=fields,
            key=key,
            required=required,
        )

    def lag(self) -> dict[str, MirrorLag]:
        """Each mirror's lag: records not applied yet, and seconds since the last applied
        record's timestamp (0 when caught up). Blocking: it asks the broker and the database."""
        return self._data.lag()

    def reconcile(self, topic: str | None = None, progress: Progress | None = None) -> list[Drift]:
        """Compare each mirror (or ``topic``'s) with its topic's latest state, read from the
        log; ``progress(read, total)`` follows the read. Blocking."""
        return self._data.reconcile(topic, progress)

    # -- producing -----------------------------------------------------------------------

    def _declare(self, topic: Topic[Any]) -> None:
        declare_once(self._topics, topic, self.name)

    def produces(self, *topics: Topic[Any]) -> None:
        """Declare the topics this service publishes, emits or sends requests to, so tools see
        them before the first send (``ferryman lint``, ``docs``, ``schema check``)."""
        for topic in topics:
            self._declare(topic)
            self._produces[topic.name] = topic

    def uses(self) -> list[TopicUse]:
        """How this service uses each topic it declared: what it sends, what it consumes."""
        found: list[TopicUse] = []
        for name, route in self._routes.items():
            if name in self._responders:
                found.append(TopicUse(route.topic, "responds", route.name))
                continue
            stored = route.stored_offsets is not None
            role: Role = "mirrors" if stored and route.input == "keyed" else "handles"
            # A store reads in chunks of its own; only a batch the user asked for counts.
            batch = None if stored and route.isolate else route.batch
            found.append(TopicUse(route.topic, role, route.name, batch, stored))
        for name, topic in self._topics.items():
            if name in self._routes and name not in self._produces:
                continue
            sent: Role = "requests" if isinstance(topic, RequestTopic) else "produces"
            found.append(TopicUse(topic, sent))
        return found

    def _encode(
        self,
        topic: Topic[Any],
        value: Any,
        key: Any,
        headers: Mapping[str, bytes | str] | None,
        timestamp: datetime | float | None,
        allow_expired: bool,
    ) -> EncodedRecord:
        """The record a send would produce, checked and encoded (a direct send and the outbox)."""
        if self._topics.get(topic.name) is not topic:
            self._declare(topic)
        if self._tracing is not None:  # the outbox keeps the headers: the relay carries them
            headers = self._tracing.send(topic.name, headers)
        return encode_record(
            self._conn.serde,
            topic,
            value,
            key,
            headers,
            timestamp,
            self._source,
            allow_expired,
            # checked per record: once created, no specs to build and compare on each send
            prepare=None
            if self._conn.created(topic.name)
            else lambda: self._conn.ensure_topics(topic.specs()),
        )

    def _send(
        self,
        topic: Topic[Any],
        value: Any,
        key: Any,
        headers: Mapping[str, bytes | str] | None,
        timestamp: datetime | float | None,
        allow_expired: bool = False,
    ) -> Delivery[RecordMetadata]:
        record = self._encode(topic, value, key, headers, timestamp, allow_expired)
        self.metrics.produced(topic.name)
        future = self._conn.producer.send(
            topic.name,
            record.value,
            key=record.key,
            headers=record.headers,
            timestamp=record.timestamp_ms,
        )
        if value is None:
            what = f"delete to {topic.name!r}"
        else:  # formatted once per topic: a Delivery is made per record
            what = self._send_names.get(topic.name) or self._send_names.setdefault(
                topic.name, f"send to {topic.name!r}"
            )
        return Delivery(future, what)

    def publish(
        self,
        topic: EntityTopic[T],
        value: T,
        *,
        headers: Mapping[str, bytes | str] | None = None,
        timestamp: datetime | float | None = None,
        allow_expired: bool = False,
    ) -> Delivery[RecordMetadata]:
        """Upsert an entity: ``await`` the Delivery (or ``.result()``) for where it landed."""
        expect_kind(topic, EntityTopic, "publish", "emit")
        return self._send(topic, value, FROM_VALUE, headers, timestamp, allow_expired)

    def delete(
        self,
        topic: EntityTopic[T],
        key: Any,
        *,
        headers: Mapping[str, bytes | str] | None = None,
        timestamp: datetime | float | None = None,
        allow_expired: bool = False,
    ) -> Delivery[RecordMetadata]:
        """Delete the entity with ``key``: a tombstone (null value) under its key."""
        expect_kind(topic, EntityTopic, "delete", "emit")
        return self._send(topic, None, key, headers, timestamp, allow_expired)

    def emit(
        self,
        topic: EventTopic[T],
        value: T,
        *,
        headers: Mapping[str, bytes | str] | None = None,
        timestamp: datetime | float | None = None,
        allow_expired: bool = False,
    ) -> Delivery[RecordMetadata]:
        """Emit an event; ``timestamp`` is when it happened (default: now)."""
        expect_kind(topic, EventTopic, "emit", "publish")
        return self._send(topic, value, FROM_VALUE, headers, timestamp, allow_expired)

    def flush(self, timeout: float | None = None) -> int:
        """Wait for every queued record; returns how many are still unacknowledged."""
        return self._conn.flush(timeout)

    # -- outbox, relay, entity sources, table pollers (docs/outbox.md) ------------------

    def outbox(self, session: Session | Connection) -> OutboxWriter:
        """``publish``/``delete``/``emit`` into ``session``'s transaction: the records are sent
        by the relay after it commits, and never if it rolls back."""
        return self._data.outbox(session)

    def source(
        self,
        topic: EntityTopic[T],
        from_: Any,
        *,
        watch: Collection[str] | None = None,
        to_value: Callable[[Any], T] | None = None,
        every: float | str | None = None,
        build: Callable[[Any, Any], T | None] | None = None,
        debounce: float | str = 0.0,
        incomplete: Literal["skip", "defaults"] = "skip",
    ) -> None:
        """Publish ORM model ``from_``'s rows as entity ``topic`` through the outbox, from the
        flushes of sessions on this service's database (``watch``: only those columns). When
        ``from_`` is a joined table, republish its changed rows ``every`` seconds ("1s",
        "500ms") as ``build(row, children)`` (docs/joins.md)."""
        self._data.source(
            topic,
            from_,
            watch=watch,
            to_value=to_value,
            every=every,
            build=build,
            debounce=debounce,
            incomplete=incomplete,
        )

    def republish(
        self,
        topic: EntityTopic[Any] | str,
        where: str | None = None,
        progress: Callable[[int, int], None] | None = None,
        rate: float | None = None,
    ) -> int:
        """Backfill: write every row of ``topic``'s source table into the outbox, or publish
        every row (matching SQL ``where``, ``rate`` a second) of its joined table now."""
        return self._data.republish(topic, where, progress, rate)

    @property
    def joined_sources(self) -> list[str]:
        """The entity topics this service republishes from joined tables."""
        return sorted(self._data.joins.republishers)

    def poll_table(
        self,
        table: Table,
        topic: Topic[T],
        *,
        updated_at: str = "updated_at",
        id: str = "id",
        every: float = 1.0,
        safety_delay: float = 5.0,
        to_value: Callable[[Any], T] | None = None,
        name: str | None = None,
    ) -> None:
        """While the service runs, publish ``table``'s rows changed past an ``(updated_at, id)``
        watermark to ``topic`` every ``every`` seconds, through the outbox (one transaction with
        the watermark); rows newer than ``safety_delay`` seconds wait for the next poll."""
        self._data.poll_table(
            table,
            topic,
            updated_at=updated_at,
            id=id,
            every=every,
            safety_delay=safety_delay,
            to_value=to_value,
            name=name,
        )

    def run_relay(self, stop: threading.Event) -> None:
        """Run only this service's outbox relay, in this thread, until ``stop`` is set."""
        try:
            self._data.run_relay(stop)
        finally:
            self._conn.close()
            self._data.close()

    # -- request/response --------------------------------------------------------------

    def _requester_started(self) -> Requester:
        if self._requester is None:
            self._requester = Requester(self._conn, self.name, self.instance_id)
        return self._requester

    @property
    def late_replies(self) -> int:
        """Replies that arrived after their request timed out (dropped)."""
        return 0 if self._requester is None else self._requester.late_replies

    def request(
        self, topic: RequestTopic[T, R], value: T, *, timeout: float = 30.0, ack: bool = False
    ) -> PendingReply[R]:
        """Send a request: ``await`` the PendingReply (or ``.result()``) for the reply.

        Raises RequestTimeout past ``timeout`` seconds, RemoteError when the responder raised.
        With ``ack=True`` the responder also sends a receipt: ``await pending.accepted``.
        """
        expect_kind(topic, RequestTopic, "request", "emit")
        self._declare(topic)
        return self._requester_started().request(topic, value, timeout, ack)

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def handled_topics(self) -> list[str]:
        """The topics this service's handlers, mirrors and responders consume, sorted."""
        return sorted(self._routes)

    def topic_specs(self) -> list[TopicSpec]:
        """Every topic this service consumes, answers or dead-letters to."""
        specs: list[TopicSpec] = []
        for route in self._routes.values():
            specs.extend(route.topic.specs())
            specs.append(dlq_spec(route.topic))
        return specs

    async def start(self) -> None:
        """Create the topics, then start consuming (when the service has handlers)."""
        if self._started:
            return
        self._stopped = asyncio.Event()
        if self.config.create_topics:
            await asyncio.to_thread(self._conn.ensure_topics, self.topic_specs())
        await asyncio.to_thread(self._data.prepare)
        self._probes.open()
        self._started = True
        await asyncio.to_thread(self._data.start)
        if self._routes:
            self._consumer = ConsumerLoop(
                self._conn, self.group, self._routes, self.config, self._fatal
            )
            self._last_consumer = self._consumer
            await self._consumer.start()

    def _fatal(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = exc
        if self._stopped is not None:
            self._stopped.set()

    async def stop(self) -> None:
        """Stop fetching, finish in-flight work, commit, leave the group, flush, close."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()
        requester, self._requester = self._requester, None
        if requester is not None:
            await asyncio.to_thread(requester.close)
        await asyncio.to_thread(self._data.stop)
        await asyncio.to_thread(self._probes.close)  # no scrape or check inside a client now
        await asyncio.to_thread(self._conn.close)
        await asyncio.to_thread(self._data.close)
        self._started = False
        if self._stopped is not None:
            self._stopped.set()

    async def wait(self) -> None:
        """Wait until the service stops or fails; raises the failure (e.g. HandlerError)."""
        if self._stopped is None:
            raise ConfigError(f"service {self.name!r} is not started: await start() first")
        await self._stopped.wait()
        if self.failure is not None:
            raise self.failure

    async def run(self) -> None:
        """Run until SIGTERM/SIGINT (or a failure with on_error='stop'), then stop cleanly."""
        await run_services([self])

    def in_flight(self) -> dict[TopicPartition, int]:
        """Records fetched and not yet handled, per partition (empty when not consuming)."""
        return {} if self._consumer is None else self._consumer.in_flight()

    def paused(self) -> set[TopicPartition]:
        """Partitions whose fetching is paused: ``max_in_flight`` records wait, or their handler
        stalled while the poll thread waited for room."""
        return set() if self._consumer is None else self._consumer.paused()

    @property
    def stats(self) -> dict[str, int]:
        """Counters: records handled and dead-lettered by this instance, decodes retried while the
        schema registry was unreachable, polls of the broker, late replies, and the mirrors'
        lag (``mirror_lag_records``, ``mirror_lag_ms``: read in the background at most every
        2 s while stats are read; see docs/stores.md)."""
        consumer = self._consumer or self._last_consumer
        return {
            "handled": 0 if consumer is None else consumer.handled,
            "dead_lettered": 0 if consumer is None else consumer.dead_lettered,
            "registry_retries": 0 if consumer is None else consumer.registry_retries,
            "polls": 0 if consumer is None else consumer.polls,
            "late_replies": self.late_replies,
            **self._data.lag_stats(),
        }

    # -- observability (docs/operating.md) ---------------------------------------------

    @property
    def metrics_registry(self) -> Any:
        """The CollectorRegistry of this service's metrics (None with metrics off)."""
        return self.metrics.registry

    def live(self) -> list[Check]:
        """Liveness: the consumer's poll thread still polls. Blocking."""
        return self._probes.live()

    def ready(self) -> list[Check]:
        """Readiness: partitions assigned, broker, registry and database answer. Blocking."""
        return self._probes.ready()

    async def __aenter__(self) -> Service:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
