"""Topic names and configs the embedded broker refuses, and how it says what to do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ferryman.broker.embedded import EmbeddedBroker
from ferryman.broker.embedded.admin import EmbeddedAdmin
from ferryman.errors import (
    ClientClosed,
    InvalidTopic,
    ProduceError,
    TopicMismatch,
    UnknownPartition,
    UnknownTopic,
)
from ferryman.records import TopicPartition, TopicSpec


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    b = EmbeddedBroker(tmp_path / "broker.db", cleaner_interval=None)
    yield b
    b.close()


@pytest.fixture
def admin(broker: EmbeddedBroker) -> EmbeddedAdmin:
    return broker.admin()


@pytest.mark.parametrize("name", ["a", "A.b_c-9", "x" * 249, "..."])
def test_legal_names(admin: EmbeddedAdmin, name: str) -> None:
    admin.create_topic(TopicSpec(name, 1))
    assert name in admin.list_topics()


@pytest.mark.parametrize("name", ["", ".", "..", "a b", "a/b", "é", "x" * 250, "tab\t"])
def test_illegal_names_say_what_is_legal(admin: EmbeddedAdmin, name: str) -> None:
    with pytest.raises(InvalidTopic, match=r"a-z, A-Z, 0-9"):
        admin.create_topic(TopicSpec(name, 1))


@pytest.mark.parametrize("partitions", [0, -3, 10_001])
def test_partition_counts(admin: EmbeddedAdmin, partitions: int) -> None:
    with pytest.raises(InvalidTopic, match="partition count"):
        admin.create_topic(TopicSpec("t", partitions))


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({"cleanup.policy": "compact,shred"}, "'delete', 'compact'"),
        ({"cleanup.policy": ""}, "cleanup.policy"),
        ({"retention.ms": "-2"}, ">= -1"),
        ({"retention.bytes": "1e9"}, "whole number"),
        ({"min.compaction.lag.ms": "-1"}, ">= 0"),
        ({"delete.retention.ms": "tomorrow"}, "whole number"),
        ({"min.cleanable.dirty.ratio": "1.5"}, "from 0 to 1"),
        ({"retention.hours": "1"}, "unknown topic config"),
    ],
)
def test_bad_configs(admin: EmbeddedAdmin, config: dict[str, str], says: str) -> None:
    with pytest.raises(InvalidTopic, match=says):
        admin.create_topic(TopicSpec("t", 1, config))
    assert admin.list_topics() == []


def test_policy_spelling_does_not_make_a_mismatch(admin: EmbeddedAdmin) -> None:
    admin.create_topic(TopicSpec("t", 2, {"cleanup.policy": "compact,delete"}))
    admin.create_topic(TopicSpec("t", 2, {"cleanup.policy": "delete, compact"}), exist_ok=True)
    with pytest.raises(TopicMismatch, match="delete the topic"):
        admin.create_topic(TopicSpec("t", 2, {"cleanup.policy": "compact"}), exist_ok=True)


def test_describe_fills_in_defaults(admin: EmbeddedAdmin) -> None:
    admin.create_topic(TopicSpec("t", 1, {"retention.ms": "1000"}))
    config = admin.describe_topic("t").config
    assert config["retention.ms"] == "1000"
    assert config["cleanup.policy"] == "delete"


def test_producing_to_unknown_topics_and_partitions(broker: EmbeddedBroker) -> None:
    broker.admin().create_topic(TopicSpec("t", 2))
    producer = broker.producer()
    with pytest.raises(UnknownTopic, match="does not create topics"):
        producer.send("nope", b"v")
    with pytest.raises(UnknownPartition, match="partitions 0 to 1"):
        producer.send("t", b"v", partition=2)
    consumer = broker.consumer(None)
    with pytest.raises(UnknownTopic):
        consumer.assign([TopicPartition("nope", 0)])
    with pytest.raises(UnknownPartition):
        consumer.assign([TopicPartition("t", 5)])


def test_delete_removes_records_offsets_and_lets_the_name_be_reused(broker: EmbeddedBroker) -> None:
    admin = broker.admin()
    admin.create_topic(TopicSpec("t", 1))
    producer = broker.producer()
    producer.send("t", b"old").result(10)
    consumer = broker.consumer("g")
    consumer.assign([TopicPartition("t", 0)])
    consumer.commit({TopicPartition("t", 0): 1})
    admin.delete_topic("t")
    assert admin.committed("g") == {}
    with pytest.raises(UnknownTopic):
        admin.delete_topic("t")

    admin.create_topic(TopicSpec("t", 1))
    assert admin.offsets("t")[0].latest == 0
    # the producer's cached view of the old topic does not leak into the new one
    producer.send("t", b"new").result(10)
    reader = broker.consumer(None)
    reader.assign([TopicPartition("t", 0)])
    assert [r.value for r in reader.poll(10)] == [b"new"]


def test_closed_clients_refuse_work(broker: EmbeddedBroker) -> None:
    admin = broker.admin()
    admin.close()
    with pytest.raises(ClientClosed):
        admin.list_topics()
    broker.close()
    with pytest.raises(ClientClosed):
        broker.producer()


def test_records_queued_for_a_topic_deleted_meanwhile_fail(broker: EmbeddedBroker) -> None:
    admin = broker.admin()
    admin.create_topic(TopicSpec("t", 1))
    producer = broker.producer()
    producer.send("t", b"first").result(10)  # the producer now knows the topic
    admin.delete_topic("t")
    future = producer.send("t", b"orphan")
    with pytest.raises(ProduceError, match="create it again and resend"):
        future.result(10)
    with pytest.raises(UnknownTopic):  # and it forgot the topic
        producer.send("t", b"again")
