"""Client lifecycle and limits: closed clients, standalone consumers, batch sizes."""

from __future__ import annotations

import pytest

from ferryman.errors import ClientClosed, CommitFailed, ConfigError
from ferryman.records import Record, TopicPartition

from .conftest import Backend
from .helpers import POLL, consume_all, produce_n


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
    batches: list[list[Record]] = []
    while sum(len(b) for b in batches) < 20:
        batch = consumer.poll(backend.join_timeout, max_records=3)
        assert batch, "no records within the deadline"
        batches.append(batch)
    assert all(len(b) <= 3 for b in batches)
    assert [r.offset for b in batches for r in b] == list(range(20))
    assert consume_all(consumer, 0, 1.0) == []
