"""Client lifecycle and limits: closed clients, standalone consumers, batch sizes."""

from __future__ import annotations

import time

import pytest

from ferryman.errors import ClientClosed, CommitFailed, ConfigError
from ferryman.records import Polled, Record, RecordBatch, TopicPartition, headers_of, settled
from ferryman.testing.contract.backend import Backend
from ferryman.testing.contract.helpers import POLL, consume_all, produce_n


def test_clients_used_after_close_raise_client_closed(backend: Backend) -> None:
    topic = backend.topic(1)
    producer = backend.producer()
    producer.close()
    with pytest.raises(ClientClosed):
        producer.send(topic, b"v").result(30.0)

    consumer = backend.consumer(backend.group())
    consumer.close()
    with pytest.raises(ClientClosed):
        consumer.poll(POLL)

    admin = backend.broker.admin()
    admin.close()
    with pytest.raises(ClientClosed):
        admin.list_topics()


def test_a_standalone_consumer_neither_subscribes_nor_commits(backend: Backend) -> None:
    topic = backend.topic(1)
    consumer = backend.consumer(None)
    with pytest.raises(ConfigError):
        consumer.subscribe([topic])
    consumer.assign([TopicPartition(topic, 0)])
    with pytest.raises(CommitFailed):
        consumer.commit({TopicPartition(topic, 0): 1})


def test_poll_returns_at_most_max_records(backend: Backend) -> None:
    topic = backend.topic(1)
    produce_n(backend.producer(), topic, 20)
    consumer = backend.consumer(None)
    consumer.assign([TopicPartition(topic, 0)])
    batches: list[RecordBatch] = []
    while sum(len(b) for b in batches) < 20:
        batch = consumer.poll(backend.join_timeout, max_records=3)
        assert batch, "no records within the deadline"
        batches.append(batch)
    assert all(len(b) <= 3 for b in batches)
    assert [r.offset for b in batches for r in b] == list(range(20))
    assert consume_all(consumer, 0, 1.0) == []


def test_a_polled_batch_gives_the_same_records_as_records_and_as_rows(backend: Backend) -> None:
    topic = backend.topic(1)
    producer = backend.producer()
    sent = [
        producer.send(topic, b"v0", key=b"k0", timestamp=1_700_000_000_000),
        producer.send(topic, None, key=b"k1", headers=(("h", b"1"), ("h", b"2"), ("e", b""))),
        producer.send(topic, b"", key=None),
    ]
    producer.flush()
    for f in sent:
        f.result(30.0)
    consumer = backend.consumer(None)
    consumer.assign([TopicPartition(topic, 0)])
    batch = consumer.poll(backend.join_timeout, max_records=10)
    while len(batch) < 3:
        more = consumer.poll(backend.join_timeout, max_records=10)
        assert more, f"only {len(batch)} of 3 records within the deadline"
        batch = RecordBatch([*batch.rows, *more.rows])
    assert isinstance(batch, RecordBatch)
    records = list(batch)
    assert all(type(r) is Record for r in records)
    assert [tuple(r) for r in records] == list(batch.rows)
    assert [(r.offset, r.key, r.value) for r in records] == [
        (0, b"k0", b"v0"),
        (1, b"k1", None),
        (2, None, b""),
    ]
    assert records[0].timestamp == 1_700_000_000_000
    assert records[1].headers == (("h", b"1"), ("h", b"2"), ("e", b""))
    assert records[1].header("h") == b"2"
    assert records[2].headers == ()
    assert batch == records
    assert batch[1] == records[1]
    assert batch[1:] == records[1:]


def test_poll_rows_gives_the_records_of_poll_with_their_headers_built_on_demand(
    backend: Backend,
) -> None:
    """``poll_rows`` (the Service's poll) leaves headers pending; built, they are poll's. A
    consumer that has used poll_rows still gives whole records from poll."""
    topic = backend.topic(1)
    producer = backend.producer()
    headers = (("h", b"1"), ("h", b"2"), ("e", b""), ("ünï", b"\xff"))
    for i in range(6):
        producer.send(topic, b"v%d" % i, key=b"k%d" % i, headers=headers if i % 2 else ())
    producer.flush()
    reference = backend.consumer(None)
    reference.assign([TopicPartition(topic, 0)])
    expected = consume_all(reference, 6, backend.join_timeout)
    consumer = backend.consumer(None)
    consumer.assign([TopicPartition(topic, 0)])
    polled: list[Polled] = []
    deadline = time.monotonic() + backend.join_timeout
    while len(polled) < 3 and time.monotonic() < deadline:
        polled += consumer.poll_rows(POLL, max_records=3 - len(polled))
    got = [settled(r) for r in polled]
    rest: list[Record] = []
    while len(rest) < 3 and time.monotonic() < deadline:
        rest += consumer.poll(POLL, max_records=3 - len(rest))
    assert [headers_of(r[5]) for r in polled] == [r.headers for r in expected[:3]]
    assert [headers_of(r[5]) for r in polled] == [r.headers for r in expected[:3]]  # twice
    assert got + [tuple(r) for r in rest] == [tuple(r) for r in expected]
    assert all(type(r.headers) is tuple for r in rest)
