"""Offset inspection: earliest/latest per partition, committed offsets, group lag."""

from __future__ import annotations

from ferryman.records import PartitionOffsets, TopicPartition
from ferryman.testing.contract.backend import Backend
from ferryman.testing.contract.helpers import consume_all, produce_n


def test_offsets_of_an_empty_and_a_written_topic(backend: Backend) -> None:
    topic = backend.topic(3)
    assert backend.admin.offsets(topic) == {p: PartitionOffsets(0, 0) for p in range(3)}

    producer = backend.producer()
    produce_n(producer, topic, 5, partition=0)
    produce_n(producer, topic, 2, partition=2)

    assert backend.admin.offsets(topic) == {
        0: PartitionOffsets(0, 5),
        1: PartitionOffsets(0, 0),
        2: PartitionOffsets(0, 2),
    }


def test_committed_offsets_as_the_admin_and_the_member_see_them(backend: Backend) -> None:
    topic = backend.topic(2)
    other = backend.topic(1)
    producer = backend.producer()
    produce_n(producer, topic, 10, partition=0)
    produce_n(producer, topic, 4, partition=1)
    produce_n(producer, other, 3)
    group = backend.group()
    tp0, tp1, tp_other = (
        TopicPartition(topic, 0),
        TopicPartition(topic, 1),
        TopicPartition(other, 0),
    )

    assert backend.admin.committed(group, topic) == {}
    assert backend.admin.committed(group) == {}

    consumer = backend.consumer(group)
    consumer.subscribe([topic, other])
    consume_all(consumer, 17, backend.join_timeout)
    assert consumer.committed([tp0, tp1]) == {tp0: None, tp1: None}
    consumer.commit({tp0: 7, tp_other: 3})

    assert consumer.committed([tp0, tp1]) == {tp0: 7, tp1: None}
    assert backend.admin.committed(group, topic) == {tp0: 7}
    assert backend.admin.committed(group) == {tp0: 7, tp_other: 3}


def test_group_lag(backend: Backend) -> None:
    topic = backend.topic(2)
    producer = backend.producer()
    produce_n(producer, topic, 10, partition=0)
    produce_n(producer, topic, 4, partition=1)
    group = backend.group()
    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)

    # without a commit, lag counts from the earliest offset
    assert backend.admin.group_lag(group, topic) == {tp0: 10, tp1: 4}

    consumer = backend.consumer(group)
    consumer.subscribe([topic])
    consume_all(consumer, 14, backend.join_timeout)
    consumer.commit({tp0: 6, tp1: 4})
    assert backend.admin.group_lag(group, topic) == {tp0: 4, tp1: 0}

    produce_n(producer, topic, 3, partition=1)
    assert backend.admin.group_lag(group, topic) == {tp0: 4, tp1: 3}
