"""The Service: a name, its connections, its handlers, and the small parts that do the work.

A Service composes: Connections (broker, registry, codecs, opened on first use), a Publisher
(publish/delete/emit), the handler routes, a ConsumerLoop (started with the service when it has
routes) and a Requester (started on the first request).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from datetime import datetime
from typing import Any, Literal, TypeVar, overload

from ferryman.broker.base import Broker
from ferryman.config import Locations, ServiceConfig, resolve_locations
from ferryman.errors import ConfigError, SchemaError
from ferryman.records import RecordMetadata, TopicSpec
from ferryman.rpc import PendingReply, Requester, responder_route
from ferryman.runtime import messages as h
from ferryman.runtime.connections import Connections
from ferryman.runtime.consumer import ConsumerLoop
from ferryman.runtime.dead_letters import dlq_spec
from ferryman.runtime.handlers import Route, handler_route
from ferryman.topics import EntityTopic, EventTopic, RequestTopic, Topic

T = TypeVar("T")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

_FROM_VALUE = object()


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
    ) -> Future[RecordMetadata]:
        if self._topics.get(topic.name) is not topic:
            self._declare(topic)
        if value is None and key is _FROM_VALUE:
            raise SchemaError(
                f"{topic.kind} {topic.name!r} carries {topic.model.__name__}, not None; pass a "
                f"{topic.model.__name__}"
                + (
                    ", or delete(topic, key=...) to delete an entity (a tombstone)"
                    if isinstance(topic, EntityTopic)
                    else ""
                )
            )
        when = h.timestamp_ms(timestamp)
        if timestamp is not None and not allow_expired:
            _check_retention(topic, when)
        self._conn.ensure_topics(topic.specs())
        serde = self._conn.serde
        payload = None if value is None else serde.encode_value(topic, value)
        if key is _FROM_VALUE:  # after encode_value, which checked the value's type
            key = topic.key_of(value)
        raw_key = serde.encode_key(topic, key)
        extra = tuple(
            (k, v.encode() if isinstance(v, str) else v) for k, v in (headers or {}).items()
        )
        return self._conn.producer.send(
            topic.name,
            payload,
            key=raw_key,
            headers=(
                (h.MESSAGE_ID, h.new_id().encode()),
                (h.SOURCE, self._source),
                *extra,
            ),
            timestamp=when,
        )

    def publish_nowait(
        self,
        topic: EntityTopic[T],
        value: T,
        *,
        headers: Mapping[str, bytes | str] | None = None,
        timestamp: datetime | float | None = None,
        allow_expired: bool = False,
    ) -> Future[RecordMetadata]:
        """Queue an entity upsert; the future resolves once the broker acknowledged it."""
        _expect(topic, EntityTopic, "publish", "emit")
        return self._send(topic, value, _FROM_VALUE, headers, timestamp, allow_expired)

    def delete_nowait(
        self,
        topic: EntityTopic[T],
        key: Any,
        *,
        headers: Mapping[str, bytes | str] | None = None,
        timestamp: datetime | float | None = None,
        allow_expired: bool = False,
    ) -> Future[RecordMetadata]:
        """Queue a tombstone (null value) for the entity with ``key``."""
        _expect(topic, EntityTopic, "delete", "emit")
        return self._send(topic, None, key, headers, timestamp, allow_expired)

    def emit_nowait(
        self,
        topic: EventTopic[T],
        value: T,
        *,
        headers: Mapping[str, bytes | str] | None = None,
        timestamp: datetime | float | None = None,
        allow_expired: bool = False,
    ) -> Future[RecordMetadata]:
        """Queue an event; ``timestamp`` is when it happened (default: now)."""
        _expect(topic, EventTopic, "emit", "publish")
        return self._send(topic, value, _FROM_VALUE, headers, timestamp, allow_expired)

    async def publish(self, topic: EntityTopic[T], value: T, **kw: Any) -> RecordMetadata:
        """Upsert an entity; returns where it landed once the broker acknowledged it."""
        return await asyncio.wrap_future(self.publish_nowait(topic, value, **kw))

    async def delete(self, topic: EntityTopic[T], key: Any, **kw: Any) -> RecordMetadata:
        """Delete an entity: a tombstone under its key."""
        return await asyncio.wrap_future(self.delete_nowait(topic, key, **kw))

    async def emit(self, topic: EventTopic[T], value: T, **kw: Any) -> RecordMetadata:
        """Emit an event; returns where it landed once the broker acknowledged it."""
        return await asyncio.wrap_future(self.emit_nowait(topic, value, **kw))

    def publish_sync(self, topic: EntityTopic[T], value: T, **kw: Any) -> RecordMetadata:
        """Blocking form of ``publish``."""
        return self.publish_nowait(topic, value, **kw).result()

    def delete_sync(self, topic: EntityTopic[T], key: Any, **kw: Any) -> RecordMetadata:
        """Blocking form of ``delete``."""
        return self.delete_nowait(topic, key, **kw).result()

    def emit_sync(self, topic: EventTopic[T], value: T, **kw: Any) -> RecordMetadata:
        """Blocking form of ``emit``."""
        return self.emit_nowait(topic, value, **kw).result()

    def flush(self, timeout: float | None = None) -> int:
        """Wait for every queued record; returns how many are still unacknowledged."""
        return self._conn.flush(timeout)

    # -- request/response --------------------------------------------------------------

    @property
    def requester(self) -> Requester:
        if self._requester is None:
            self._requester = Requester(self._conn, self.name, self.instance_id)
        return self._requester

    @property
    def late_replies(self) -> int:
        """Replies that arrived after their request timed out (dropped)."""
        return 0 if self._requester is None else self._requester.late_replies

    @overload
    async def request(
        self,
        topic: RequestTopic[T, R],
        value: T,
        *,
        timeout: float = ...,
        ack: Literal[False] = ...,
    ) -> R: ...
    @overload
    async def request(
        self, topic: RequestTopic[T, R], value: T, *, timeout: float = ..., ack: Literal[True]
    ) -> PendingReply[R]: ...
    async def request(
        self, topic: RequestTopic[T, R], value: T, *, timeout: float = 30.0, ack: bool = False
    ) -> R | PendingReply[R]:
        """Send a request and wait for its reply (RequestTimeout, RemoteError).

        With ``ack=True``, return a PendingReply once the request is sent: await its
        ``accepted()`` for the responder's receipt, then ``reply()`` for the answer.
        """
        _expect(topic, RequestTopic, "request", "emit")
        self._declare(topic)
        requester = self.requester
        if topic.reply_topic not in requester._partitions:
            await asyncio.to_thread(requester.reply_partition, topic)
        pending, sent = requester.send(topic, value, timeout, ack)
        await asyncio.wrap_future(sent)
        if ack:
            return pending
        return await pending.reply()

    @overload
    def request_sync(
        self,
        topic: RequestTopic[T, R],
        value: T,
        *,
        timeout: float = ...,
        ack: Literal[False] = ...,
    ) -> R: ...
    @overload
    def request_sync(
        self, topic: RequestTopic[T, R], value: T, *, timeout: float = ..., ack: Literal[True]
    ) -> PendingReply[R]: ...
    def request_sync(
        self, topic: RequestTopic[T, R], value: T, *, timeout: float = 30.0, ack: bool = False
    ) -> R | PendingReply[R]:
        """Blocking form of ``request``."""
        _expect(topic, RequestTopic, "request", "emit")
        self._declare(topic)
        pending, sent = self.requester.send(topic, value, timeout, ack)
        sent.result()
        if ack:
            return pending
        return pending.result()

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
        self._started = True
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
        await asyncio.to_thread(self._conn.close)
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
        from ferryman.runtime.runner import run_services

        await run_services([self])

    @property
    def consumer(self) -> ConsumerLoop | None:
        """The running consumer loop (None when stopped or without handlers)."""
        return self._consumer

    @property
    def stats(self) -> dict[str, int]:
        """Counters: records handled and dead-lettered by this instance, decodes retried while the
        schema registry was unreachable, late replies."""
        consumer = self._consumer or self._last_consumer
        return {
            "handled": 0 if consumer is None else consumer.handled,
            "dead_lettered": 0 if consumer is None else consumer.dead_lettered,
            "registry_retries": 0 if consumer is None else consumer.registry_retries,
            "late_replies": self.late_replies,
        }

    async def __aenter__(self) -> Service:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _expect(topic: Any, kind: type, call: str, other: str) -> None:
    if not isinstance(topic, kind):
        raise ConfigError(
            f"{call}() takes a {kind.__name__}, got {topic!r}; use {other}() for that kind of topic"
            if not isinstance(topic, RequestTopic)
            else f"{call}() takes a {kind.__name__}, got {topic!r}; use request() for requests"
        )


def _type_name(t: type | None) -> str:
    return "no key" if t is None else t.__name__


def _check_retention(topic: Topic[Any], timestamp: int) -> None:
    """Refuse a record older than its topic's time retention: the next retention pass would
    delete it, possibly before anyone read it."""
    if "delete" not in topic.config.get("cleanup.policy", "delete").split(","):
        return
    retention = int(topic.config.get("retention.ms", "-1"))
    if retention < 0:
        return
    age = int(time.time() * 1000) - timestamp
    if age > retention:
        raise ConfigError(
            f"{topic.kind} {topic.name!r} keeps records for retention.ms={retention} "
            f"({_duration(retention)}), but this record's timestamp is {_duration(age)} old: "
            "the next retention pass would delete it, possibly before anyone reads it. For a "
            "backfill, declare the topic with a longer retention (config={'retention.ms': ...}), "
            "or pass allow_expired=True to send it anyway"
        )


def _duration(ms: int) -> str:
    for unit, size in (("days", 86_400_000), ("hours", 3_600_000), ("minutes", 60_000)):
        if ms >= size:
            return f"{ms / size:.1f} {unit}"
    return f"{ms / 1000:.1f} seconds"
