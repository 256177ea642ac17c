"""Request/response in one process: replies, remote errors, timeouts, late replies, receipt acks."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest
from tests.waiting import eventually

from ferryman.broker import open_broker
from ferryman.config import resolve_locations
from ferryman.errors import (
    BrokerUnavailable,
    ConfigError,
    RemoteError,
    RequestTimeout,
    SchemaError,
)
from ferryman.rpc.requester import Requester
from ferryman.runtime.connections import Connections
from ferryman.runtime.headers import CORRELATION_ID, REPLY_TO
from ferryman.service import Service
from ferryman.topics import EventTopic, RequestTopic

from .conftest import Env, read, run


@dataclass
class Ask:
    n: int
    delay: float = 0.0


@dataclass
class Numbered:
    key: int
    seq: int


@dataclass
class Answer:
    n: int
    square: int


def test_requests_get_their_own_replies(env: Env) -> None:
    topic = RequestTopic(env.name("square"), Ask, reply=Answer, partition_key="n", partitions=3)

    async def main() -> None:
        server = env.service("server")
        client = env.service("client")

        @server.responder(topic)
        async def square(ask: Ask) -> Answer:
            return Answer(ask.n, ask.n * ask.n)

        async with server, client:
            answers = await asyncio.gather(
                *(client.request(topic, Ask(n), timeout=env.timeout) for n in range(50))
            )
        assert answers == [Answer(n, n * n) for n in range(50)]

    run(main())


def test_a_responder_exception_comes_back_as_remote_error(env: Env) -> None:
    topic = RequestTopic(env.name("div"), Ask, reply=Answer, partitions=1)

    async def main() -> None:
        server = env.service("server")
        client = env.service("client")

        @server.responder(topic)
        def invert(ask: Ask) -> Answer:
            return Answer(ask.n, 1 // ask.n)

        async with server, client:
            with pytest.raises(RemoteError, match=r"of '.*div.*' raised .*fix the request") as info:
                await client.request(topic, Ask(0), timeout=env.timeout)
            assert (info.value.remote_type, info.value.remote_message) == (
                "ZeroDivisionError",
                "integer division or modulo by zero",
            )
            assert await client.request(topic, Ask(1), timeout=env.timeout) == Answer(1, 1)
            assert server.stats["dead_lettered"] == 0

    run(main())


def test_no_responder_times_out(env: Env) -> None:
    topic = RequestTopic(env.name("void"), Ask, reply=Answer, partitions=1)

    async def main() -> None:
        async with env.service("client") as client:
            with pytest.raises(RequestTimeout, match=r"@responder\("):
                await client.request(topic, Ask(1), timeout=0.3)

    run(main())


def holding_server_and_client(
    env: Env,
    topic: RequestTopic[Ask, Answer],
    release: threading.Event,
    held: threading.Event | None = None,
) -> tuple[Service, Service]:
    """A server whose responder holds request n=1 until ``release`` is set (and sets ``held``
    once it holds it), and a client."""
    server = env.service("server")

    @server.responder(topic)
    def slow(ask: Ask) -> Answer:
        if ask.n == 1:
            if held is not None:
                held.set()
            release.wait(env.timeout)
        return Answer(ask.n, ask.n)

    return server, env.service("client")


def test_a_late_reply_is_dropped_and_counted(env: Env) -> None:
    topic = RequestTopic(env.name("slow"), Ask, reply=Answer, partitions=1)
    release = threading.Event()

    async def main() -> None:
        server, client = holding_server_and_client(env, topic, release)
        async with server, client:
            with pytest.raises(RequestTimeout):
                await client.request(topic, Ask(1), timeout=0.2)
            release.set()
            await eventually(lambda: client.late_replies == 1, env.timeout, "a late reply")
            assert await client.request(topic, Ask(2), timeout=env.timeout) == Answer(2, 2)
            assert client.late_replies == 1

    run(main())


def test_receipt_ack_reaches_the_caller_before_the_reply(env: Env) -> None:
    topic = RequestTopic(env.name("ack"), Ask, reply=Answer, partitions=1)

    async def main() -> None:
        server = env.service("server")
        client = env.service("client")
        release = asyncio.Event()

        @server.responder(topic)
        async def held(ask: Ask) -> Answer:
            await release.wait()
            return Answer(ask.n, 0)

        async with server, client:
            pending = client.request(topic, Ask(4), timeout=env.timeout, ack=True)
            await pending.accepted
            assert not pending.done(), "the reply cannot exist yet: the handler is held"
            release.set()
            assert await pending == Answer(4, 0)

    run(main())


def test_blocking_request_from_a_thread(env: Env) -> None:
    topic = RequestTopic(env.name("sync"), Ask, reply=Answer, partitions=1)

    async def main() -> None:
        server = env.service("server")

        @server.responder(topic)
        async def square(ask: Ask) -> Answer:
            return Answer(ask.n, ask.n * ask.n)

        client = env.service("client")
        async with server:
            answer = await asyncio.to_thread(
                lambda: client.request(topic, Ask(9), timeout=env.timeout).result()
            )
            pending = client.request(topic, Ask(3), timeout=env.timeout, ack=True)
            await asyncio.to_thread(pending.accepted.result)
            assert await asyncio.to_thread(pending.result) == Answer(3, 9)
        await client.stop()
        assert answer == Answer(9, 81)

    run(main())


def test_a_reply_after_the_deadline_is_late_even_if_nobody_awaited_it(env: Env) -> None:
    topic = RequestTopic(env.name("slow"), Ask, reply=Answer, partitions=1)
    release, held = threading.Event(), threading.Event()

    async def main() -> None:
        server, client = holding_server_and_client(env, topic, release, held)
        async with server, client:
            # ack=True only to get the PendingReply at once: the caller never awaits anything.
            pending = client.request(topic, Ask(1), timeout=0.2, ack=True)
            await eventually(held.is_set, env.timeout, "the responder got the request")
            # Released only once the deadline has passed: the reply is late by construction.
            await eventually(lambda: time.monotonic() > pending.deadline, env.timeout)
            release.set()
            await eventually(lambda: client.late_replies == 1, env.timeout, "a late reply")
            with pytest.raises(RequestTimeout):
                await pending

    run(main())


@pytest.mark.parametrize("partition_key", [None, "n"], ids=["unkeyed", "keyed"])
def test_a_responder_replies_only_to_its_reply_topic(env: Env, partition_key: str | None) -> None:
    """A reply-to naming another topic, or a reply partition that does not exist, would make
    the responder write wherever a request says (a confused deputy): it is dead-lettered."""
    topic = RequestTopic(
        env.name("square"),
        Ask,
        reply=Answer,
        partition_key=partition_key,
        partitions=1,
        reply_partitions=2,
    )
    victim = EventTopic(env.name("customers"), Ask, partitions=1)
    asked: list[int] = []
    forged = {1: f"{victim.name}:0", 2: f"{topic.reply_topic}:2", 3: f"{topic.reply_topic}:-1"}

    async def main() -> None:
        server = env.service("server", retries=3)
        client = env.service("client")

        @server.responder(topic)
        async def square(ask: Ask) -> Answer:
            asked.append(ask.n)
            return Answer(ask.n, ask.n * ask.n)

        async with server, client:
            await client.emit(victim, Ask(0))
            # A forger of its own: the same codecs and producer a service has, any headers.
            forger = Connections(resolve_locations(env.broker, env.registry), None, None)
            try:
                serde = forger.serde
                for n, reply_to in forged.items():
                    await asyncio.wrap_future(
                        forger.producer.send(
                            topic.name,
                            serde.encode_value(topic, Ask(n)),
                            key=serde.encode_key(topic, topic.key_of(Ask(n))),
                            headers=((REPLY_TO, reply_to.encode()), (CORRELATION_ID, b"forged")),
                        )
                    )
            finally:
                await asyncio.to_thread(forger.close)
            assert await client.request(topic, Ask(4), timeout=env.timeout) == Answer(4, 16)
            await eventually(
                lambda: server.stats["dead_lettered"] == 3, env.timeout, lambda: server.stats
            )
            with env.admin() as admin:
                assert admin.offsets(victim.name)[0].latest == 1, "nothing written to the victim"

    run(main())
    assert asked == [4], "a rejected request is not handled"
    broker = open_broker(env.broker)
    try:
        dead = read(broker, topic.name + ".dlq", 3, env.timeout)
    finally:
        broker.close()
    for record in dead:
        h = {k: v.decode() for k, v in record.headers}
        assert h["ferryman.dlq.exception-type"] == "ferryman.RecordRejected"
        assert h["ferryman.dlq.attempts"] == "1", "not retried"
        assert f"asks for its reply to go to {h[REPLY_TO]!r}" in h["ferryman.dlq.exception-message"]
        assert (
            f"replies only to {topic.reply_topic}:<partition>"
            in h["ferryman.dlq.exception-message"]
        )
    assert sorted(
        {k: v.decode() for k, v in record.headers}[REPLY_TO] for record in dead
    ) == sorted(forged.values())


def test_request_sets_up_its_reply_partition_off_the_event_loop(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first request on a topic creates topics and waits for the reply reader: blocking
    work, done in a thread so the caller's event loop keeps running."""
    topic = RequestTopic(env.name("first"), Ask, reply=Answer, partitions=1)
    setup_threads: list[threading.Thread] = []
    original = Requester.reply_partition

    def recording(self: Requester, t: RequestTopic[Any, Any]) -> Any:
        setup_threads.append(threading.current_thread())
        return original(self, t)

    monkeypatch.setattr(Requester, "reply_partition", recording)

    async def main() -> None:
        server = env.service("server")

        @server.responder(topic)
        async def square(ask: Ask) -> Answer:
            return Answer(ask.n, ask.n * ask.n)

        async with server, env.service("client") as client:
            pending = client.request(topic, Ask(5), timeout=env.timeout)
            assert await pending == Answer(5, 25)
            assert await client.request(topic, Ask(6), timeout=env.timeout) == Answer(6, 36)

    run(main())
    assert setup_threads, "the reply partition was set up"
    assert threading.main_thread() not in setup_threads, "never on the event loop's thread"


def test_bad_requests_raise_at_call_time(env: Env) -> None:
    topic = RequestTopic(env.name("bad"), Ask, reply=Answer, partitions=1)

    async def main() -> None:
        async with env.service("client") as client:
            with pytest.raises(SchemaError):
                client.request(topic, Answer(1, 1))  # type: ignore[misc]
            with pytest.raises(ConfigError, match="seconds > 0"):
                client.request(topic, Ask(1), timeout=0)

    run(main())


def test_a_request_that_cannot_be_sent_fails_its_waiters(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = RequestTopic(env.name("unsent"), Ask, reply=Answer, partitions=1)

    def broken(self: Requester, t: RequestTopic[Any, Any]) -> Any:
        raise BrokerUnavailable("no broker")

    monkeypatch.setattr(Requester, "reply_partition", broken)

    async def main() -> None:
        async with env.service("client") as client:
            pending = client.request(topic, Ask(1), timeout=env.timeout, ack=True)
            with pytest.raises(BrokerUnavailable):
                await pending.accepted
            with pytest.raises(BrokerUnavailable):
                await pending
            with pytest.raises(BrokerUnavailable):
                await asyncio.to_thread(pending.result)

    run(main())


def test_requests_made_during_the_first_setup_leave_in_order(env: Env) -> None:
    """The first request sets up the reply partition in a thread; requests made meanwhile
    queue behind it rather than racing it, so a keyed topic answers them in call order."""
    topic = RequestTopic(
        env.name("order"), Numbered, reply=Answer, partition_key="key", partitions=1
    )
    asked: list[int] = []

    async def main() -> None:
        server = env.service("server")

        @server.responder(topic)
        async def note(numbered: Numbered) -> Answer:
            asked.append(numbered.seq)
            return Answer(numbered.seq, 0)

        async with server, env.service("client") as client:
            pendings = [
                client.request(topic, Numbered(1, i), timeout=env.timeout) for i in range(30)
            ]
            await asyncio.gather(*pendings)

    run(main())
    assert asked == list(range(30))
