"""Producing: order and acknowledgements, key -> partition, headers, null values and keys."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future

import pytest

from ferryman.broker.partitioner import partition_for
from ferryman.errors import UnknownPartition, UnknownTopic
from ferryman.records import Record, RecordMetadata, TopicPartition
from ferryman.testing.contract.backend import Backend
from ferryman.testing.contract.helpers import (
    assert_increasing,
    by_partition,
    consume_all,
    partitions_of,
    produce_n,
)


def read_from_start(backend: Backend, topic: str, partitions: int, n: int) -> list[Record]:
    """The first ``n`` records of ``topic``, read by a standalone consumer."""
    consumer = backend.consumer(None)
    consumer.assign(partitions_of(topic, partitions))
    return consume_all(consumer, n, backend.join_timeout)


def test_acknowledgement_gives_coordinates_and_offsets_increase(backend: Backend) -> None:
    topic = backend.topic(3)
    acks = produce_n(backend.producer(), topic, 300, key=lambda i: b"key-%d" % (i % 17))

    assert {a.topic for a in acks} == {topic}
    per_partition: dict[int, list[int]] = {}
    for a in acks:
        assert 0 <= a.partition < 3
        per_partition.setdefault(a.partition, []).append(a.offset)
    for p, offsets in per_partition.items():
        # no compaction here, so no gaps: 0, 1, 2, ... in send order
        assert offsets == list(range(len(offsets))), f"partition {p}"


def test_total_order_within_a_partition(backend: Backend) -> None:
    topic = backend.topic(3)
    acks = produce_n(backend.producer(), topic, 300, key=lambda i: b"key-%d" % (i % 17))
    sent = {(a.partition, a.offset): i for i, a in enumerate(acks)}

    records = read_from_start(backend, topic, 3, 300)

    assert len(records) == 300
    for p, rs in by_partition(records).items():
        assert_increasing([r.offset for r in rs], f"partition {p}")
        # within a partition, records come back in the order they were sent
        assert_increasing([sent[(p, r.offset)] for r in rs], f"send order of partition {p}")
    for r in records:
        i = sent[(r.partition, r.offset)]
        assert (r.topic, r.key, r.value) == (topic, b"key-%d" % (i % 17), b"value-%d" % i)


def test_key_goes_to_the_murmur2_partition(backend: Backend) -> None:
    topic = backend.topic(7)
    keys = [b"", b"a", b"21", b"foobar", bytes(range(256))] + [
        b"customer-%d" % i for i in range(100)
    ]
    producer = backend.producer()
    futures = [producer.send(topic, b"v", key=k) for k in keys]
    producer.flush(30.0)
    acks = [f.result(30.0) for f in futures]

    for k, a in zip(keys, acks, strict=True):
        assert a.partition == partition_for(k, 7), f"key {k!r}"
    records = read_from_start(backend, topic, 7, len(keys))
    assert {(r.key, r.partition) for r in records} == {(k, partition_for(k, 7)) for k in keys}


def test_explicit_partition_wins_over_the_key(backend: Backend) -> None:
    topic = backend.topic(4)
    key = b"customer-1"
    other = (partition_for(key, 4) + 1) % 4
    ack = produce_n(backend.producer(), topic, 1, key=lambda _: key, partition=other)[0]
    assert ack.partition == other


def test_headers_round_trip_byte_for_byte(backend: Backend) -> None:
    topic = backend.topic(1)
    headers = (
        ("ferryman.id", b"\x00\x01\x02"),
        ("repeated", b"first"),
        ("binary", bytes(range(256))),
        ("empty", b""),
        ("repeated", b"second"),
        ("ünïcode name", "välue".encode()),
        ("repeated", b"first"),
    )
    produce_n(backend.producer(), topic, 1, headers=headers)
    produce_n(backend.producer(), topic, 1)  # and a record with no headers at all

    first, second = read_from_start(backend, topic, 1, 2)
    assert first.headers == headers
    assert first.header("repeated") == b"first"
    assert first.header("missing") is None
    assert second.headers == ()


def test_null_value_is_not_an_empty_value_and_keys_may_be_null(backend: Backend) -> None:
    topic = backend.topic(1)
    producer = backend.producer()
    cases = [(b"k", None), (b"k", b""), (None, None), (None, b""), (b"", b"x"), (None, b"x")]
    for key, value in cases:
        producer.send(topic, value, key=key)
    producer.flush(30.0)

    records = read_from_start(backend, topic, 1, len(cases))
    assert [(r.key, r.value) for r in records] == cases


def test_unkeyed_records_spread_without_error(backend: Backend) -> None:
    topic = backend.topic(3)
    acks = produce_n(backend.producer(), topic, 30)
    assert all(0 <= a.partition < 3 for a in acks)
    records = read_from_start(backend, topic, 3, 30)
    assert all(r.key is None for r in records)


def test_timestamps_round_trip(backend: Backend) -> None:
    topic = backend.topic(1)
    then = int(time.time() * 1000) - 3_600_000
    before = int(time.time() * 1000)
    producer = backend.producer()
    explicit = producer.send(topic, b"then", timestamp=then)
    default = producer.send(topic, b"now")
    producer.flush(30.0)
    after = int(time.time() * 1000)

    assert explicit.result().timestamp == then
    first, second = read_from_start(backend, topic, 1, 2)
    assert first.timestamp == then
    # the default is the time of sending (a clock bound, not a speed check)
    assert before - 1000 <= second.timestamp <= after + 1000
    assert default.result().timestamp == second.timestamp


def _raises(exc: type[Exception], send: Callable[[], Future[RecordMetadata]]) -> None:
    """The error may come at once or through the acknowledgement; either is allowed."""

    def send_and_wait() -> None:
        send().result(timeout=60.0)

    with pytest.raises(exc):
        send_and_wait()


def test_produce_to_unknown_topic_fails(backend: Backend) -> None:
    producer = backend.producer()
    _raises(UnknownTopic, lambda: producer.send(backend.unique("missing"), b"v"))


def test_produce_to_unknown_partition_fails(backend: Backend) -> None:
    topic = backend.topic(2)
    producer = backend.producer()
    _raises(UnknownPartition, lambda: producer.send(topic, b"v", partition=2))
    _raises(UnknownPartition, lambda: producer.send(topic, b"v", partition=-2))
    # the producer is still usable afterwards
    ack: RecordMetadata = producer.send(topic, b"v", partition=1).result(30.0)
    assert TopicPartition(ack.topic, ack.partition) == TopicPartition(topic, 1)
