"""A Service's sends on their common path (no headers, no timestamp, nobody awaiting): every
record still carries its message id and source, keeps its key's order, and a failed delivery is
still reported, raised when awaited and logged when not."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from ferryman.broker import open_broker
from ferryman.errors import ProduceError
from ferryman.records import Record, TopicPartition
from ferryman.runtime.headers import MESSAGE_ID, SOURCE
from ferryman.topics import EventTopic

from .conftest import Env, run


@pytest.fixture
def kafka_env(kafka_bootstrap: str, tmp_path: Path) -> Env:
    """Kafka only: the embedded broker has no max.message.bytes to refuse a record with."""
    return Env("kafka", f"kafka://{kafka_bootstrap}", f"embedded:{tmp_path / 'r.db'}", timeout=60)


@dataclass
class Placed:
    order_id: str
    amount: int
    note: str = ""


def _read_all(env: Env, topic: str, partitions: int, count: int) -> list[Record]:
    broker = open_broker(env.broker)
    consumer = broker.consumer(None)
    got: list[Record] = []
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        deadline = time.monotonic() + env.timeout
        while len(got) < count and time.monotonic() < deadline:
            got.extend(consumer.poll(0.2, 1000))
        return got
    finally:
        consumer.close()
        broker.close()


def test_unawaited_emits_each_carry_a_message_id_and_the_source_in_key_order(env: Env) -> None:
    placed = EventTopic(env.name("placed"), Placed, partition_key="order_id", partitions=3)
    n = 2_000
    shop = env.service("shop")
    for i in range(n):
        shop.emit(placed, Placed(f"o-{i % 11}", i))  # never awaited
    assert shop.flush(env.timeout) == 0
    run(shop.stop())

    got = _read_all(env, placed.name, 3, n)
    assert len(got) == n
    ids = [r.header(MESSAGE_ID) for r in got]
    assert None not in ids
    assert len(set(ids)) == n, "message ids repeat"
    for raw in ids:
        assert raw is not None
        parsed = uuid.UUID(raw.decode())
        assert parsed.version == 4
        assert parsed.hex == raw.decode()
    assert {r.header(SOURCE) for r in got} == {env.name("shop").encode()}
    decode = shop._conn.serde.decode  # the consumed values, through the service's own codecs
    by_key: dict[str, list[int]] = {}
    for r in sorted(got, key=lambda r: (r.partition, r.offset)):
        message = decode(placed, r)
        assert message.value is not None
        by_key.setdefault(message.key, []).append(message.value.amount)
    assert sorted(by_key) == sorted(f"o-{k}" for k in range(11))
    for key, amounts in by_key.items():
        assert amounts == sorted(amounts), f"order of key {key} not kept"


def _too_large_topic(env: Env) -> EventTopic[Placed]:
    # The broker refuses a record above the topic's max.message.bytes; the client (1 MB limit)
    # sends it, so it fails in the delivery report, after emit() returned. (Notes from
    # _incompressible(): the producer compresses with lz4.)
    return EventTopic(
        env.name("small"), Placed, partition_key="order_id", config={"max.message.bytes": 2000}
    )


def _incompressible() -> str:
    return secrets.token_urlsafe(8_000)


@pytest.mark.kafka
def test_a_failed_delivery_raises_when_awaited(kafka_env: Env) -> None:
    env = kafka_env
    small = _too_large_topic(env)

    async def main() -> None:
        svc = env.service("sender")
        await svc.emit(small, Placed("o-1", 1))  # fits
        deliveries = [svc.emit(small, Placed("o-2", i, _incompressible())) for i in range(3)]
        for delivery in deliveries:
            with pytest.raises(ProduceError, match="not acknowledged"):
                await asyncio.wait_for(delivery, env.timeout)
        with pytest.raises(ProduceError, match="not acknowledged"):
            await asyncio.to_thread(svc.emit(small, Placed("o-3", 0, _incompressible())).result, 60)
        await svc.emit(small, Placed("o-4", 2))  # the producer goes on after a refused record
        await svc.stop()

    run(main())


@pytest.mark.kafka
def test_a_failed_delivery_nobody_awaited_is_logged(
    kafka_env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    env = kafka_env
    small = _too_large_topic(env)
    svc = env.service("sender")
    svc.emit(small, Placed("o-1", 1)).result(60)
    with caplog.at_level(logging.ERROR, "ferryman.delivery"):
        for i in range(3):
            svc.emit(small, Placed("o-2", i, _incompressible()))  # dropped at once
        svc.flush(env.timeout)
    run(svc.stop())
    failures = [r for r in caplog.records if "failed and nobody awaited it" in r.getMessage()]
    assert len(failures) == 3, caplog.text
    assert all(f"send to {small.name!r}" in r.getMessage() for r in failures)
