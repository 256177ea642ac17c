"""The Kafka backend's own behaviour beyond the contract: bad addresses, mismatches, passthrough.

The unreachable-server tests need no Kafka and run everywhere; the rest use the running one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import re
import socket
import threading
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from tests.waiting import wait_until

from ferryman.broker import open_broker
from ferryman.broker.kafka import KafkaBroker
from ferryman.broker.partitioner import partition_for
from ferryman.config import broker_location
from ferryman.errors import (
    BrokerUnavailable,
    ConfigError,
    ProduceError,
    TopicMismatch,
    UnknownTopic,
)
from ferryman.records import RecordMetadata, TopicPartition, TopicSpec


@pytest.fixture
def silent_server() -> Iterator[str]:
    """An address that accepts TCP connections and never answers (a hung or wrong server)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"127.0.0.1:{server.getsockname()[1]}"


@pytest.fixture
def refusing_address() -> str:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"127.0.0.1:{port}"


def unique(prefix: str) -> str:
    return f"kafka-backend.{prefix}.{uuid.uuid4().hex[:12]}"


# pytest-timeout turns a hang into a failure (the broker is given 2 s, open_broker 5 s).
@pytest.mark.timeout(60)
def test_refused_connection_raises_broker_unavailable_naming_the_address(
    refusing_address: str,
) -> None:
    with pytest.raises(BrokerUnavailable) as raised:
        KafkaBroker(refusing_address, {}, connect_timeout=2.0)
    message = str(raised.value)
    assert refusing_address in message
    assert "scripts/kafka.sh start" in message


@pytest.mark.timeout(60)
def test_a_server_that_never_answers_raises_broker_unavailable(silent_server: str) -> None:
    with pytest.raises(BrokerUnavailable, match=re.escape(silent_server)):
        KafkaBroker(silent_server, {}, connect_timeout=2.0)


@pytest.mark.timeout(60)
def test_open_broker_with_an_unreachable_url_raises_broker_unavailable(
    refusing_address: str,
) -> None:
    with pytest.raises(BrokerUnavailable, match=re.escape(refusing_address)):
        open_broker(f"kafka://{refusing_address}", kafka_config={})


def test_an_unknown_librdkafka_property_is_a_config_error(refusing_address: str) -> None:
    with pytest.raises(ConfigError, match=re.escape("no.such.property")):
        KafkaBroker(refusing_address, {"no.such.property": "1"}, connect_timeout=2.0)


@pytest.fixture
def broker(kafka_bootstrap: str) -> Iterator[KafkaBroker]:
    b = KafkaBroker(kafka_bootstrap, {})
    yield b
    b.close()


@pytest.mark.kafka
def test_a_topic_assigned_just_after_creation_waits_for_its_leaders(broker: KafkaBroker) -> None:
    """CI found it: a requester's reply reader assigned a just-created reply topic, read the
    watermarks while the partition had no leader yet, and stopped with "Not leader for
    partition". Before the fix, 28 of 40 such rounds failed on one local node."""
    admin = broker.admin()
    for _ in range(10):
        name = unique("fresh")
        admin.create_topic(TopicSpec(name, 8, {}))
        consumer = broker.consumer(None, auto_offset_reset="latest")
        try:
            consumer.assign(TopicPartition(name, p) for p in range(8))
            assert {consumer.position(TopicPartition(name, p)) for p in range(8)} == {0}
        finally:
            consumer.close()
            admin.delete_topic(name)


@pytest.mark.kafka
@pytest.mark.timeout(180)
def test_a_paused_partition_revoked_and_assigned_back_is_read_again(broker: KafkaBroker) -> None:
    """librdkafka keeps a partition's pause across a rebalance (librdkafka #1849): a partition
    paused for back-pressure, revoked and assigned back came back paused while the consumer
    loop, which forgets pauses on revoke, never resumed it, and it was never read again."""
    admin = broker.admin()
    name = unique("repaused")
    admin.create_topic(TopicSpec(name, 2, {}))
    group = unique("group")
    first = broker.consumer(group)
    second = broker.consumer(group)
    try:
        owned: set[TopicPartition] = set()
        first.subscribe(
            [name],
            on_assign=lambda tps: owned.update(tps),
            on_revoke=lambda tps: owned.difference_update(tps),
        )
        wait_until(lambda: (first.poll(0.1), len(owned) == 2)[1], 60, "first owns both")
        first.pause(owned)
        second.subscribe([name])
        wait_until(
            lambda: (first.poll(0.1), second.poll(0.1), len(owned) == 1)[2],
            60,
            "the second member took a partition",
        )
        [kept] = owned
        [moved] = {TopicPartition(name, p) for p in range(2)} - owned
        second.close()
        wait_until(lambda: (first.poll(0.1), moved in owned)[1], 60, "the moved one came back")
        producer = broker.producer()
        producer.send(name, b"after", partition=moved.partition).result(30)
        producer.close()
        got: list[bytes | None] = []

        def read() -> list[bytes | None]:
            got.extend(r.value for r in first.poll(0.2))
            return got

        wait_until(
            read,
            30,
            f"a record of {moved}, assigned back after its pause (the kept {kept} stays paused)",
        )
        assert got == [b"after"]
    finally:
        first.close()
        second.close()
        admin.delete_topic(name)


@pytest.mark.kafka
def test_topic_mismatch_says_what_differs_and_how_to_change_it(broker: KafkaBroker) -> None:
    admin = broker.admin()
    name = unique("mismatch")
    admin.create_topic(TopicSpec(name, 3, {"cleanup.policy": "compact"}))
    try:
        with pytest.raises(TopicMismatch) as raised:
            admin.create_topic(TopicSpec(name, 6, {"cleanup.policy": "delete"}), exist_ok=True)
        message = str(raised.value)
        assert name in message
        assert "3 partitions" in message
        assert "--partitions 6" in message
        assert "cleanup.policy=compact" in message
        assert "--add-config cleanup.policy=delete" in message
        # nothing was changed on the broker
        info = admin.describe_topic(name)
        assert (info.partitions, info.config["cleanup.policy"]) == (3, "compact")
        # the declaration the topic does match is accepted
        admin.create_topic(TopicSpec(name, 3, {"cleanup.policy": "compact"}), exist_ok=True)
    finally:
        admin.delete_topic(name)


@pytest.mark.kafka
@pytest.mark.parametrize("where", ["argument", "environment"])
def test_librdkafka_properties_pass_through(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    # message.max.bytes is enforced by the client itself, so its effect is observable at once.
    if where == "argument":
        b = open_broker(f"kafka://{kafka_bootstrap}", kafka_config={"message.max.bytes": "2000"})
    else:
        monkeypatch.setenv("FERRYMAN_KAFKA_MESSAGE_MAX_BYTES", "2000")
        b = open_broker(broker_location(f"kafka://{kafka_bootstrap}"))  # config reads the env
    admin = b.admin()
    name = unique("passthrough")
    admin.create_topic(TopicSpec(name, 1))
    producer = b.producer()
    try:
        assert producer.send(name, bytes(100)).result(30.0).offset == 0
        with pytest.raises(ProduceError, match="too large"):
            producer.send(name, bytes(5000)).result(30.0)
    finally:
        producer.close(30.0)
        admin.delete_topic(name)
        b.close()


@pytest.mark.kafka
def test_per_client_config_wins_over_the_defaults(broker: KafkaBroker) -> None:
    admin = broker.admin()
    name = unique("override")
    admin.create_topic(TopicSpec(name, 4))
    # the default partitioner is murmur2_random; "consistent" (CRC32) puts this key elsewhere
    producer = broker.producer({"partitioner": "consistent", "compression.type": "zstd"})
    try:
        ack = producer.send(name, b"v", key=b"customer-2").result(30.0)
        assert ack.partition == zlib.crc32(b"customer-2") % 4 != partition_for(b"customer-2", 4)
    finally:
        producer.close(30.0)
        admin.delete_topic(name)


@pytest.mark.kafka
def test_acknowledgements_behave_as_futures(broker: KafkaBroker) -> None:
    admin = broker.admin()
    name = unique("futures")
    admin.create_topic(TopicSpec(name, 2))
    # a long linger keeps the first record pending while it is waited on
    producer = broker.producer({"linger.ms": "2000"})
    try:
        pending = producer.send(name, b"first")
        with pytest.raises(concurrent.futures.TimeoutError):
            pending.result(timeout=0.01)
        assert not pending.cancel(), "a queued record cannot be taken back"
        called: list[int] = []
        pending.add_done_callback(lambda f: called.append(f.result().offset))
        woken: list[int] = []
        waiters = [
            threading.Thread(target=lambda: woken.append(pending.result(30.0).offset))
            for _ in range(3)
        ]
        for w in waiters:
            w.start()
        producer.flush(30.0)
        for w in waiters:
            w.join(30.0)
        assert pending.result(0).offset == 0
        assert called == [0]
        assert woken == [0, 0, 0], "threads blocked in result() were not all woken"

        batch = [producer.send(name, b"x", key=b"k%d" % i) for i in range(20)]
        done, not_done = concurrent.futures.wait(batch, timeout=30.0)
        assert (len(done), not_done) == (20, set())
        assert len(list(concurrent.futures.as_completed(batch, timeout=30.0))) == 20

        async def awaited() -> RecordMetadata:
            return await asyncio.wrap_future(producer.send(name, b"async", partition=1))

        assert asyncio.run(awaited()).partition == 1
    finally:
        producer.close(30.0)
        admin.delete_topic(name)


@pytest.mark.kafka
def test_concurrent_creators_of_one_topic_all_succeed(kafka_bootstrap: str) -> None:
    # Several services starting at once each create the topics they use; the losers of the race
    # get TOPIC_ALREADY_EXISTS before the topic's metadata reaches them, and must still succeed.
    brokers = [KafkaBroker(kafka_bootstrap, {}) for _ in range(8)]
    admins = [b.admin() for b in brokers]
    names = [f"race-{uuid.uuid4().hex[:8]}" for _ in range(10)]
    try:
        with concurrent.futures.ThreadPoolExecutor(len(admins)) as pool:
            for name in names:
                spec = TopicSpec(name, partitions=6, config={"cleanup.policy": "delete"})
                barrier = threading.Barrier(len(admins))

                def create(admin: Any, spec: TopicSpec = spec, barrier: Any = barrier) -> None:
                    barrier.wait(timeout=30)
                    admin.create_topic(spec, exist_ok=True)

                for future in [pool.submit(create, a) for a in admins]:
                    future.result(timeout=60)
                assert admins[0].describe_topic(name).partitions == 6
    finally:
        for name in names:
            with contextlib.suppress(UnknownTopic):
                admins[0].delete_topic(name)
        for b in brokers:
            b.close()


@pytest.mark.kafka
def test_a_subscribed_topic_that_does_not_exist_is_logged_and_the_others_are_read(
    broker: KafkaBroker, caplog: pytest.LogCaptureFixture
) -> None:
    # librdkafka reports the missing topic as an error message among the records of a poll:
    # it must not become a record, stop the consumer or hide the records around it.
    real, missing = unique("real"), unique("missing")
    broker.admin().create_topic(TopicSpec(real, 1))
    producer = broker.producer()
    for i in range(5):
        producer.send(real, b"v%d" % i)
    producer.close()
    consumer = broker.consumer(unique("group"))
    try:
        consumer.subscribe([missing, real])
        got: list[bytes | None] = []

        def five_and_a_warning() -> bool:
            batch = consumer.poll(0.5)
            assert all(r.topic == real for r in batch)
            got.extend(r.value for r in batch)
            return len(got) >= 5 and missing in caplog.text

        with caplog.at_level(logging.WARNING, logger="ferryman.broker.kafka"):
            wait_until(five_and_a_warning, 30, lambda: f"5 records and a warning; got {got}")
        assert got == [b"v%d" % i for i in range(5)]
        assert missing in caplog.text, "the missing topic was never reported"
    finally:
        consumer.close()
