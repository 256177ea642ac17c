"""The composition root: a Service wires the runtime, request/response and handlers together.

A Service composes: Connections (broker, registry, codecs, opened on first use), the handler
routes, a ConsumerLoop (started with the service when it has routes) and a Requester (started on
the first request). ``run_services`` runs services until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import threading
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar, overload

from sqlalchemy import Connection, Table
from sqlalchemy.orm import Session

from ferryman.broker.base import Broker
from ferryman.config import Locations, ServiceConfig, resolve_locations
from ferryman.errors import ConfigError
from ferryman.records import RecordMetadata, TopicPartition, TopicSpec
from ferryman.rpc.requester import PendingReply, Requester
from ferryman.rpc.responder import responder_route
from ferryman.runtime.connections import Connections
from ferryman.runtime.consumer import ConsumerLoop
from ferryman.runtime.dead_letters import dlq_spec
from ferryman.runtime.delivery import Delivery
from ferryman.runtime.encoding import FROM_VALUE, encode_record, expect_kind
from ferryman.runtime.handlers import Route, handler_route, is_async
from ferryman.runtime.snapshot import Progress, latest_state
from ferryman.runtime.threads import in_thread
from ferryman.stores.database import Database
from ferryman.stores.mirror import Mirror
from ferryman.stores.outbox import OutboxRecord
from ferryman.stores.poller import TablePoller
from ferryman.stores.polling import TablePublisher
from ferryman.stores.producing import OutboxWriter
from ferryman.stores.reconcile import Drift, compare
from ferryman.stores.routes import (
    MirrorLag,
    StoreRun,
    TransactionalRun,
    mirror_lag,
    other_positionals,
    session_parameter,
    stored_offsets,
)
from ferryman.stores.source import EntitySource
from ferryman.stores.tables import Transform
from ferryman.stores.workers import OutboxWorkers
from ferryman.topics import EntityTopic, EventTopic, RequestTopic, Topic

T = TypeVar("T")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

MIRROR_BATCH = 5000
"""Records of one partition a mirror applies per transaction, at most (fewer when fewer wait)."""
TRANSACTION_CHUNK = 500
"""Records a transactional handler handles per transaction (one record at a time after a
failure, so only the failing record is dead-lettered)."""


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
        self._consumer: ConsumerLoop | None = None
        self._last_consumer: ConsumerLoop | None = None
        self._requester: Requester | None = None
        self._stopped: asyncio.Event | None = None
        self._started = False
        self.failure: BaseException | None = None
        self._db: Database | None = None
        self._mirrors: dict[str, Mirror] = {}
        self._create_tables: list[Mirror] = []
        self._outboxes = OutboxWorkers(
            lambda: self.database,
            lambda: self._conn.producer,
            lambda topic: self._conn.admin.describe_topic(topic).partitions,
            self._encode_for_outbox,
            relay=self.config.relay,
            name=name,
        )

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
                self._add_route(self._transactional_route(topic, fn, batch, session))
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
        if self._db is None:
            self._db = Database(self.locations.database)
        return self._db

    def mirror(
        self,
        topic: EntityTopic[Any],
        into: Any = None,
        *,
        table: str | None = None,
        rename: Mapping[str, str] | None = None,
        exclude: Collection[str] = (),
        transform: Transform | None = None,
        create_table: bool = True,
    ) -> Mirror:
        """Keep ``topic`` as a table of the service's database, effectively once (see
        docs/stores.md); the table is created at start unless ``create_table=False``."""
        mirror = Mirror(
            self.database,
            topic,
            into,
            table=table,
            rename=rename,
            exclude=exclude,
            transform=transform,
        )
        run = StoreRun(self.database, mirror, self.group)
        self._add_route(
            Route(
                topic,
                functools.partial(in_thread, run),
                MIRROR_BATCH,
                repr(mirror),
                "keyed",
                isolate=True,
                stored_offsets=stored_offsets(self.database, self.group),
            )
        )
        self._mirrors[topic.name] = mirror
        if create_table:
            self._create_tables.append(mirror)
        return mirror

    def _transactional_route(
        self, topic: Topic[Any], fn: Callable[..., Any], batch: int | None, session: str
    ) -> Route:
        if is_async(fn):
            raise ConfigError(
                f"handler {fn.__qualname__} asks for a database session but is async; sessions "
                "are blocking: write it as a plain def (it runs in a worker thread)"
            )
        run = TransactionalRun(
            self.database,
            fn,
            self.group,
            batch=batch is not None,
            with_message=other_positionals(fn, session) == 2,
            session_param=session,
        )
        return Route(
            topic,
            functools.partial(in_thread, run),
            batch or TRANSACTION_CHUNK,
            getattr(fn, "__qualname__", repr(fn)),
            "message",
            isolate=batch is None,  # a user's batch is dead-lettered whole, as without a session
            stored_offsets=stored_offsets(self.database, self.group),
        )

    def _prepare_database(self) -> None:
        """Create ferryman's offsets table and the mirrors' missing tables; then check that
        every mirror's table has the columns it writes (MirrorSchemaError otherwise)."""
        if not self._mirrors and not any(r.stored_offsets for r in self._routes.values()):
            return
        db = self.database
        db.create_missing([db.offsets.table, *(m.table for m in self._create_tables)])
        with db.engine.connect() as conn:
            for mirror in self._mirrors.values():
                mirror.check(conn)

    def lag(self) -> dict[str, MirrorLag]:
        """Each mirror's lag: records not applied yet, and seconds since the last applied
        record's timestamp (0 when caught up). Blocking: it asks the broker and the database."""
        admin = self._conn.admin
        lags: dict[str, MirrorLag] = {}
        with self.database.engine.connect() as conn:
            for name in sorted(self._mirrors):
                latest = {p: o.latest for p, o in admin.offsets(name).items()}
                lags[name] = mirror_lag(conn, self.database, self.group, name, latest)
        return lags

    def reconcile(self, topic: str | None = None, progress: Progress | None = None) -> list[Drift]:
        """Compare each mirror (or ``topic``'s) with its topic's latest state, read from the
        log; ``progress(read, total)`` follows the read. Blocking."""
        if topic is not None and topic not in self._mirrors:
            raise ConfigError(
                f"service {self.name!r} has no mirror of {topic!r}; its mirrors: "
                f"{', '.join(sorted(self._mirrors)) or 'none'}"
            )
        drifts: list[Drift] = []
        for name in [topic] if topic is not None else sorted(self._mirrors):
            mirror = self._mirrors[name]
            latest = latest_state(
                self._conn.broker, self._conn.admin, self._conn.serde, mirror.topic, progress
            )
            with self.database.engine.connect() as conn:
                drifts.append(compare(conn, mirror, latest))
        return drifts

    # -- producing -----------------------------------------------------------------------

    def _declare(self, topic: Topic[Any]) -> None:
        """Refuse a second, different declaration of a topic name: codecs are cached by name,
        so it would silently be bound to the first declaration's model."""
        known = self._topics.setdefault(topic.name, topic)
        if known is topic:
            return
        if type(known) is not type(topic) or known.model is not topic.model:
            raise ConfigError(
                f"service {self.name!r} has two declarations of topic {topic.name!r}: "
                f"{known!r} and {topic!r}; a topic carries one model: declare it once "
                "(in one module) and import that declaration everywhere"
            )
        if known.key_type is not topic.key_type:
            raise ConfigError(
                f"service {self.name!r} has two declarations of topic {topic.name!r} with "
                f"different key types ({_type_name(known.key_type)} and "
                f"{_type_name(topic.key_type)}); declare it once and import that declaration"
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
        if self._topics.get(topic.name) is not topic:
            self._declare(topic)
        record = encode_record(
            self._conn.serde,
            topic,
            value,
            key,
            headers,
            timestamp,
            self._source,
            allow_expired,
            prepare=lambda: self._conn.ensure_topics(topic.specs()),
        )
        future = self._conn.producer.send(
            topic.name,
            record.value,
            key=record.key,
            headers=record.headers,
            timestamp=record.timestamp_ms,
        )
        return Delivery(future, f"{'delete' if value is None else 'send'} to {topic.name!r}")

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
        return self._outboxes.writer(session)

    def source(
        self,
        topic: EntityTopic[T],
        from_: type[Any],
        *,
        watch: Collection[str] | None = None,
        to_value: Callable[[Any], T] | None = None,
    ) -> None:
        """Publish ORM model ``from_``'s rows as entity ``topic`` through the outbox, from the
        flushes of sessions on this service's database: insert/update an upsert, delete a
        tombstone; with ``watch``, only changes to those columns publish."""
        self._declare(topic)
        self._outboxes.add_source(
            EntitySource(
                topic,
                from_,
                encode=self._encode_for_outbox,
                write=self._outboxes.write,
                owns=self._outboxes.owns,
                watch=watch,
                to_value=to_value,
            )
        )

    def republish(self, topic: EntityTopic[Any] | str) -> int:
        """Backfill: write every row of ``topic``'s (or the topic named so) source table into
        the outbox as an upsert, in one transaction; returns how many rows."""
        if not isinstance(topic, str):
            expect_kind(topic, EntityTopic, "republish", "source")
        count = self._outboxes.republish(topic if isinstance(topic, str) else topic.name)
        self._outboxes.used()
        return count

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
        self._declare(topic)
        poller = TablePoller(
            self.database,
            table,
            updated_at=updated_at,
            id=id,
            safety_delay=safety_delay,
            name=name,
        )
        self._outboxes.add_publisher(TablePublisher(poller, topic, every=every, to_value=to_value))

    def run_relay(self, stop: threading.Event) -> None:
        """Run only this service's outbox relay, in this thread, until ``stop`` is set."""
        try:
            self._outboxes.run_relay(stop)
        finally:
            self._conn.close()
            if self._db is not None:
                self._db.dispose()

    def _encode_for_outbox(
        self,
        call: str,
        topic: Any,
        arg: Any,
        headers: Mapping[str, bytes | str] | None,
        timestamp: datetime | float | None,
        allow_expired: bool,
    ) -> OutboxRecord:
        """The record ``call`` (publish, delete, emit) would send, checked as a direct send is,
        with the topic created or checked so that its partition count is known."""
        if call == "emit":
            expect_kind(topic, EventTopic, "emit", "publish")
        else:
            expect_kind(topic, EntityTopic, call, "emit")
        if self._topics.get(topic.name) is not topic:
            self._declare(topic)
        value, key = (None, arg) if call == "delete" else (arg, FROM_VALUE)
        record = encode_record(
            self._conn.serde,
            topic,
            value,
            key,
            headers,
            timestamp,
            self._source,
            allow_expired,
            prepare=lambda: self._conn.ensure_topics(topic.specs()),
        )
        return OutboxRecord(
            record.topic, record.key, record.value, record.headers, record.timestamp_ms
        )

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
        await asyncio.to_thread(self._prepare_database)
        self._started = True
        await asyncio.to_thread(self._outboxes.start)
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
        await asyncio.to_thread(self._outboxes.stop)
        await asyncio.to_thread(self._conn.close)
        if self._db is not None:
            await asyncio.to_thread(self._db.dispose)
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
        """Partitions whose fetching is paused because ``max_in_flight`` records wait."""
        return set() if self._consumer is None else self._consumer.paused()

    @property
    def stats(self) -> dict[str, int]:
        """Counters: records handled and dead-lettered by this instance, decodes retried while the
        schema registry was unreachable, polls of the broker, late replies."""
        consumer = self._consumer or self._last_consumer
        return {
            "handled": 0 if consumer is None else consumer.handled,
            "dead_lettered": 0 if consumer is None else consumer.dead_lettered,
            "registry_retries": 0 if consumer is None else consumer.registry_retries,
            "polls": 0 if consumer is None else consumer.polls,
            "late_replies": self.late_replies,
        }

    async def __aenter__(self) -> Service:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def run_services(services: Sequence[Service]) -> None:
    """Run ``services`` until a signal or until one fails; then stop all of them.

    A failure (HandlerError with ``on_error='stop'``, a lost broker) is raised after every
    service stopped.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        # Signal handlers can only be set from the main thread; elsewhere the caller stops us.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    started: list[Service] = []
    try:
        for svc in services:
            await svc.start()
            started.append(svc)
        waits = [asyncio.ensure_future(svc.wait()) for svc in started]
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait([stopper, *waits], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        for w in waits:
            w.cancel()
        await asyncio.gather(stopper, *waits, return_exceptions=True)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        for svc in reversed(started):
            await svc.stop()
    for svc in started:
        if svc.failure is not None:
            raise svc.failure


def _type_name(t: type | None) -> str:
    return "no key" if t is None else t.__name__
