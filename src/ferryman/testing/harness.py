"""One test's broker, registry and services, and what was sent to them.

The ``ferryman`` fixture makes one per test. It points ``FERRYMAN_BROKER``/``_REGISTRY`` at a
fresh embedded broker in the test's temporary directory (or, when the user set
``FERRYMAN_BROKER=kafka://...``, at that Kafka with a registry of the test's own), so that any
Service made during the test is bound to it; it then reads back what was sent, and waits for
services to catch up by comparing their committed offsets with the end of the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy import inspect as sa_inspect

from ferryman.broker import EmbeddedLocation, open_broker
from ferryman.broker.base import Admin, Broker
from ferryman.config import ServiceConfig, broker_location, resolve_locations
from ferryman.errors import ConfigError
from ferryman.records import Record, TopicPartition
from ferryman.runtime.message import Message
from ferryman.runtime.serde import Serde
from ferryman.schema.avro import AvroCodec
from ferryman.schema.open import open_registry
from ferryman.service.core import Service
from ferryman.stores.outbox import OUTBOX_TABLE
from ferryman.stores.routes import session_parameter
from ferryman.testing.matching import ANY, Expected, matches, mismatch_report
from ferryman.topics import Topic

T = TypeVar("T")

_POLL = 0.2
"""Seconds one read of the log waits for records before it looks at the positions again."""
_LAG_RECHECK = 0.01
"""Seconds between two looks at a group's committed offsets while draining."""
ENV = ("FERRYMAN_BROKER", "FERRYMAN_REGISTRY", "FERRYMAN_DATABASE")


class Harness:
    """A test's broker and registry, the services it started, and the records sent to them."""

    def __init__(self, directory: Path, environ: dict[str, str] | None = None) -> None:
        env = dict(os.environ if environ is None else environ)
        self.directory = directory
        user_broker = env.get("FERRYMAN_BROKER", "").strip()
        if user_broker.startswith("kafka://"):
            self.broker_url = user_broker
            self.registry_url = env.get("FERRYMAN_REGISTRY", "").strip() or (
                f"embedded:{directory / 'registry.db'}"
            )
        else:
            self.broker_url = f"embedded:{directory / 'broker.db'}"
            self.registry_url = "embedded"
        self.location = broker_location(self.broker_url, env)
        self.on_kafka = not isinstance(self.location, EmbeddedLocation)
        self.services: list[Service] = []
        self._modules: list[str] = []
        self._broker: Broker | None = None
        self._admin: Admin | None = None
        self._serde: Serde | None = None
        self._registry: Any = None
        self._start: dict[str, dict[int, int]] = {}
        if self.on_kafka:
            # A shared cluster keeps earlier runs' records: show only this test's.
            admin = self.admin
            self._start = {t: self._ends(admin, t) for t in admin.list_topics()}

    @property
    def environment(self) -> dict[str, str]:
        """The FERRYMAN_* settings that bind a service made now to this test's broker."""
        return {"FERRYMAN_BROKER": self.broker_url, "FERRYMAN_REGISTRY": self.registry_url}

    @property
    def broker(self) -> Broker:
        if self._broker is None:
            self._broker = open_broker(self.location)
        return self._broker

    @property
    def admin(self) -> Admin:
        """The test's admin client of the broker (one, closed with the harness)."""
        if self._admin is None:
            self._admin = self.broker.admin()
        return self._admin

    @property
    def serde(self) -> Serde:
        if self._serde is None:
            url = resolve_locations(self.broker_url, self.registry_url).registry
            registry = self._registry = open_registry(url)
            self._serde = Serde(
                lambda model, compat: AvroCodec(model, registry, compatibility=compat)
            )
        return self._serde

    # -- services ---------------------------------------------------------------------------

    def service(self, name: str, *, config: ServiceConfig | None = None, **kw: Any) -> Service:
        """A new Service bound to this test's broker and registry (a database of its own)."""
        return Service(
            name, broker=self.broker_url, registry=self.registry_url, config=config, **kw
        )

    def load(self, module: str) -> ModuleType:
        """Import ``module`` afresh, so that the services it makes at import time are bound to
        this test's broker; it is forgotten again after the test."""
        sys.modules.pop(module, None)
        self._modules.append(module)
        return importlib.import_module(module)

    @contextlib.asynccontextmanager
    async def started(self, *services: Service) -> AsyncIterator[Service]:
        """Start ``services`` (``async with``), stop them at the end; yields the first."""
        if not services:
            raise TypeError("started() needs a service: ferryman.started(orders)")
        for svc in services:
            self._check_bound(svc)
        stack = contextlib.AsyncExitStack()
        async with stack:
            for svc in services:
                await stack.enter_async_context(svc)
                self.services.append(svc)
            try:
                yield services[0]
            finally:
                for svc in services:
                    self.services.remove(svc)

    def _check_bound(self, svc: Service) -> None:
        if not isinstance(svc, Service):
            raise TypeError(f"started() takes ferryman Services, not {svc!r}")
        if svc.locations.broker != self.location:
            raise ConfigError(
                f"service {svc.name!r} uses the broker {svc.locations.broker}, not this test's "
                f"{self.location}: it was made before the test began (at import time). Make it "
                "inside the test (ferryman.service(...), or a factory function), or import its "
                "module afresh with ferryman.load('your.module')"
            )

    # -- waiting for services -----------------------------------------------------------------

    async def drain(self, *services: Service, timeout: float = 30.0) -> None:
        """Wait until each service's handlers have processed every record available, including
        records that handlers sent to each other meanwhile: every producer flushed, then each
        group's committed offsets at the end of its topics, until the ends stop moving."""
        targets = list(services or self.services)
        if not targets:
            raise ConfigError(
                "drain(): no service is running; start one with ferryman.started(svc)"
            )
        deadline = time.monotonic() + timeout
        before: dict[str, dict[int, int]] | None = None
        while True:
            ends = await asyncio.to_thread(self._settled_ends, targets, deadline)
            if ends == before:
                return
            before = ends
            while True:
                behind = await asyncio.to_thread(self._behind, targets, ends)
                if not behind:
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"drain(): after {timeout}s the services still lag behind the end of "
                        f"their topics: {behind}; is a handler stuck or failing (see the log)?"
                    )
                await asyncio.sleep(_LAG_RECHECK)

    def _settled_ends(self, services: list[Service], deadline: float) -> dict[str, dict[int, int]]:
        for svc in services:
            if svc.failure is not None:
                raise svc.failure
            while _outbox_rows(svc):  # committed records the relay has not published yet
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"drain(): {svc.name!r} still has {_outbox_rows(svc)} record(s) in its "
                        "outbox: is its relay running (ServiceConfig(relay=...))?"
                    )
                time.sleep(_LAG_RECHECK)
            left = svc.flush(max(0.0, deadline - time.monotonic()))
            if left:
                raise AssertionError(f"drain(): {left} record(s) of {svc.name!r} not acknowledged")
        topics = {t for svc in services for t in svc.handled_topics}
        return {t: self._ends(self.admin, t) for t in sorted(topics)}

    def _behind(self, services: list[Service], ends: dict[str, dict[int, int]]) -> list[str]:
        admin = self.admin
        out = []
        for svc in services:
            if svc.failure is not None:
                raise svc.failure
            for topic in svc.handled_topics:
                committed = admin.committed(svc.group, topic)
                starts = {p: o.earliest for p, o in admin.offsets(topic).items()}
                for p, end in ends.get(topic, {}).items():
                    at = committed.get(TopicPartition(topic, p), starts.get(p, 0))
                    if at < end:
                        out.append(f"{svc.group} at {topic}[{p}] {at} of {end}")
        return out

    @staticmethod
    def _ends(admin: Admin, topic: str) -> dict[int, int]:
        return {p: o.latest for p, o in admin.offsets(topic).items()}

    # -- what was sent -------------------------------------------------------------------------

    def sent(self, topic: Topic[T]) -> list[Message[T]]:
        """Every record sent to ``topic`` during this test, decoded, in offset order per
        partition (partitions one after the other)."""
        if not isinstance(topic, Topic):
            raise TypeError(
                f"sent() takes the topic's declaration (an EntityTopic, EventTopic or "
                f"RequestTopic), not {topic!r}: it decodes the records with the topic's model"
            )
        return [self.serde.decode(topic, r) for r in self.records(topic.name)]

    def records(self, topic: str) -> list[Record]:
        """The raw records sent to ``topic`` during this test (none if it does not exist)."""
        for svc in self.services:
            svc.flush(30.0)
        if topic not in self.admin.list_topics():
            return []
        ends = self._ends(self.admin, topic)
        starts = self._start.get(topic, {})
        todo = {p: end for p, end in ends.items() if end > starts.get(p, 0)}
        if not todo:
            return []
        reader = self.broker.consumer(None)
        got: list[Record] = []
        try:
            reader.assign(TopicPartition(topic, p) for p in todo)
            for p in todo:
                if starts.get(p):
                    reader.seek(TopicPartition(topic, p), starts[p])
            deadline = time.monotonic() + 30.0
            while any(reader.position(TopicPartition(topic, p)) < end for p, end in todo.items()):
                if time.monotonic() > deadline:
                    raise AssertionError(f"could not read {topic!r} to its end {todo} in 30s")
                got.extend(r for r in reader.poll(_POLL) if r.offset < todo[r.partition])
        finally:
            reader.close()
        got.sort(key=lambda r: (r.partition, r.offset))
        return got

    def topics_sent(self) -> list[str]:
        """The topics that got records during this test, sorted."""
        admin = self.admin
        return [
            t
            for t in admin.list_topics()
            if any(
                end > self._start.get(t, {}).get(p, 0) for p, end in self._ends(admin, t).items()
            )
        ]

    def assert_sent(self, topic: Topic[T], expected: Expected, *, key: Any = ANY) -> Message[T]:
        """The first record sent to ``topic`` that matches ``expected`` (and ``key``); else an
        AssertionError showing the closest record sent and how its fields differ.

        ``expected``: a value (equal field by field), a dict of some fields, a predicate on
        the value, or None (a tombstone)."""
        sent = self.sent(topic)
        for message in sent:
            if matches(expected, key, message):
                return message
        others = [t for t in self.topics_sent() if t != topic.name] if not sent else []
        raise AssertionError(mismatch_report(topic.name, expected, key, sent, others))

    def close(self) -> None:
        for module in self._modules:
            sys.modules.pop(module, None)
        if self._registry is not None:
            close = getattr(self._registry, "close", None)
            if close is not None:
                close()
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if self._broker is not None:
            self._broker.close()
            self._broker = None


def _outbox_rows(svc: Service) -> int:
    """Records waiting in ``svc``'s outbox (0 when it has none declared)."""
    table = svc.database.metadata.tables.get(OUTBOX_TABLE)
    if table is None:
        return 0
    with svc.database.engine.connect() as conn:
        if not sa_inspect(conn).has_table(OUTBOX_TABLE):
            return 0
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def message(
    value: T | None,
    *,
    topic: str | Topic[Any] = "test",
    key: Any = None,
    headers: Iterable[tuple[str, bytes]] = (),
    partition: int = 0,
    offset: int = 0,
    timestamp: int | None = None,
) -> Message[T]:
    """A Message as a handler would get it, for calling the handler directly."""
    name = topic.name if isinstance(topic, Topic) else topic
    m: Message[T] = Message(
        name,
        partition,
        offset,
        None,
        value,
        tuple(headers),
        int(time.time() * 1000) if timestamp is None else timestamp,
    )
    m.set_key(key)
    return m


async def call(
    handler: Callable[..., Any],
    value: Any,
    *,
    key: Any = None,
    topic: str | Topic[Any] = "test",
    service: Service | None = None,
) -> Any:
    """Call ``handler`` as the service would, with ``value`` (or a Message): a handler that
    takes a Message gets one (built from the value, ``key`` and ``topic`` if need be); one that
    takes a session gets a session of ``service``'s database, committed after it returns. A
    sync handler runs in a thread. Returns what the handler returned (a responder's reply)."""
    m = value if isinstance(value, Message) else message(value, topic=topic, key=key)
    session = session_parameter(handler)
    params = [
        p
        for name, p in inspect.signature(handler).parameters.items()
        if name != session
        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        and p.default is p.empty
    ]
    args: tuple[Any, ...] = (m.value, m) if len(params) >= 2 else (m.value,)
    if session is not None:
        if service is None:
            raise ConfigError(
                f"{handler.__qualname__} takes a database session: pass service= (the service "
                "whose database it writes), e.g. await call(book, event, service=orders)"
            )
        db = service.database

        def in_session() -> Any:
            with db.session() as s:
                return handler(*args, **{session: s})

        return await asyncio.to_thread(in_session)
    if inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 - async callable objects count too
    ):
        return await handler(*args)
    return await asyncio.to_thread(handler, *args)
