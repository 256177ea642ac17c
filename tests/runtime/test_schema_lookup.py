"""The first record with a writer schema the service has not seen: its schema is fetched from the
registry in a thread, so a slow registry does not stall the event loop (other partitions,
request/response, timers) while it answers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from tests.waiting import eventually

from ferryman.runtime.message import Message
from ferryman.schema import EmbeddedRegistry, open_registry
from ferryman.schema.parsing import AvroSchema
from ferryman.topics import EntityTopic, EventTopic, RequestTopic

from .conftest import Env, run


@dataclass
class Reading:
    n: int


@dataclass
class Ping:
    n: int


class SlowFetch:
    """Makes the registry's schema fetch wait until ``release`` is set, once ``slow()`` is called
    (for every id, or for ``ids``); ``asked`` tells that a fetch is waiting."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.asked, self.release = threading.Event(), threading.Event()
        self._monkeypatch = monkeypatch
        self._ids: set[int] | None = None

    def slow(self, ids: set[int] | None = None) -> None:
        self._ids = ids
        fetch = EmbeddedRegistry.get_schema

        def slow_fetch(registry: EmbeddedRegistry, schema_id: int) -> AvroSchema:
            if (self._ids is None or schema_id in self._ids) and not self.release.is_set():
                self.asked.set()
                # bounded: were this on the event loop, the test would fail, not hang
                self.release.wait(15)
            return fetch(registry, schema_id)

        self._monkeypatch.setattr(EmbeddedRegistry, "get_schema", slow_fetch)


@pytest.fixture
def fetches(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlowFetch]:
    slow = SlowFetch(monkeypatch)
    yield slow
    slow.release.set()


def test_a_slow_schema_fetch_leaves_the_event_loop_serving(env: Env, fetches: SlowFetch) -> None:
    readings = EventTopic(env.name("readings"), Reading, partitions=1)
    pings = EventTopic(env.name("pings"), Ping, partitions=1)

    async def main() -> None:
        producer = env.service("producer")
        consumer = env.service("consumer")
        got: list[tuple[str, int]] = []

        @consumer.on(readings)
        async def on_reading(r: Reading) -> None:
            got.append(("reading", r.n))

        @consumer.on(pings)
        async def on_ping(p: Ping) -> None:
            got.append(("ping", p.n))

        async with producer:
            await producer.emit(pings, Ping(0))
            async with consumer:
                await eventually(lambda: ("ping", 0) in got, env.timeout, lambda: got)
                # From here on, fetching a writer schema waits until released.
                fetches.slow()
                await producer.emit(readings, Reading(1))
                await eventually(fetches.asked.is_set, env.timeout, "the consumer never fetched")
                # While the fetch waits, the loop still runs timers and the other topic.
                await producer.emit(pings, Ping(1))
                await eventually(lambda: ("ping", 1) in got, env.timeout, lambda: got)
                assert not fetches.release.is_set()
                assert ("reading", 1) not in got
                fetches.release.set()
                await eventually(lambda: ("reading", 1) in got, env.timeout, lambda: got)

    run(main())


@dataclass
class Ask:
    n: int


@dataclass
class Answer:
    n: int


def test_the_first_reply_schema_is_fetched_off_the_event_loop(env: Env, fetches: SlowFetch) -> None:
    topic = RequestTopic(env.name("echo"), Ask, reply=Answer)

    async def main() -> None:
        server = env.service("server")
        warm = env.service("warm")
        client = env.service("client")

        @server.responder(topic)
        async def echo(ask: Ask) -> Answer:
            return Answer(ask.n)

        async with server, warm, client:
            # The server reads its first request before fetching is slowed; the client has
            # never read an Answer, so its first reply needs the reply schema.
            assert await warm.request(topic, Ask(1), timeout=env.timeout) == Answer(1)
            fetches.slow()
            reply = asyncio.ensure_future(client.request(topic, Ask(7), timeout=env.timeout))
            await eventually(fetches.asked.is_set, env.timeout, "the client never fetched")
            for _ in range(5):  # the loop keeps running while the fetch waits
                await asyncio.sleep(0.01)
            assert not reply.done()
            fetches.release.set()
            assert await reply == Answer(7)

    run(main())


@dataclass
class Sensor:
    id: int
    place: str


def test_an_unseen_key_schema_is_fetched_off_the_event_loop(env: Env, fetches: SlowFetch) -> None:
    # A handler that takes the Message gets its key decoded before it runs: that lookup too.
    sensors = EntityTopic(env.name("sensors"), Sensor, key="id", partitions=1)
    pings = EventTopic(env.name("pings"), Ping, partitions=1)

    async def main() -> None:
        producer = env.service("producer")
        consumer = env.service("consumer")
        got: list[tuple[str, object]] = []

        @consumer.on(sensors)
        async def on_sensor(sensor: Sensor, message: Message[Sensor]) -> None:
            got.append(("sensor", message.key))

        @consumer.on(pings)
        async def on_ping(p: Ping) -> None:
            got.append(("ping", p.n))

        async with producer:
            await producer.emit(pings, Ping(0))
            await producer.publish(sensors, Sensor(5, "attic"))
            registry = open_registry(env.registry)
            key_id = registry.latest(f"{sensors.name}-key").schema_id
            registry.close()
            fetches.slow({key_id})  # only the key's schema
            async with consumer:
                await eventually(
                    fetches.asked.is_set, env.timeout, "the consumer never fetched the key"
                )
                await eventually(lambda: ("ping", 0) in got, env.timeout, lambda: got)
                await producer.emit(pings, Ping(1))
                await eventually(lambda: ("ping", 1) in got, env.timeout, lambda: got)
                assert not fetches.release.is_set()
                assert ("sensor", 5) not in got
                fetches.release.set()
                await eventually(lambda: ("sensor", 5) in got, env.timeout, lambda: got)

    run(main())
