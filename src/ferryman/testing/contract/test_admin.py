"""Topic administration: create, describe, list, delete, and the errors of each."""

from __future__ import annotations

import pytest

from ferryman.errors import InvalidTopic, TopicExists, TopicMismatch, UnknownTopic
from ferryman.records import TopicSpec
from ferryman.testing.contract.backend import Backend
from ferryman.testing.waiting import wait_until


def test_create_describe_list_delete(backend: Backend) -> None:
    admin = backend.admin
    name = backend.unique("admin")
    config = {"cleanup.policy": "compact", "min.compaction.lag.ms": "1000"}
    admin.create_topic(TopicSpec(name, 3, config))

    info = admin.describe_topic(name)
    assert (info.name, info.partitions) == (name, 3)
    assert {k: info.config.get(k) for k in config} == config
    topics = admin.list_topics()
    assert name in topics
    assert topics == sorted(topics)

    admin.delete_topic(name)
    # Kafka deletes asynchronously: wait for the topic to go
    wait_until(lambda: name not in admin.list_topics(), backend.join_timeout, admin.list_topics)
    with pytest.raises(UnknownTopic):
        admin.describe_topic(name)


def test_common_kafka_topic_configs_are_accepted(backend: Backend) -> None:
    config = {
        "cleanup.policy": "delete",
        "retention.ms": "86400000",
        "retention.bytes": "1073741824",
        "segment.ms": "3600000",
        "max.message.bytes": "1048588",
        "min.cleanable.dirty.ratio": "0.5",
        "delete.retention.ms": "86400000",
    }
    name = backend.topic(1, config)
    described = backend.admin.describe_topic(name).config
    assert {k: described.get(k) for k in config} == config


def test_create_twice_raises_topic_exists(backend: Backend) -> None:
    name = backend.topic(2, {"cleanup.policy": "compact"})
    with pytest.raises(TopicExists):
        backend.admin.create_topic(TopicSpec(name, 2, {"cleanup.policy": "compact"}))
    # the same declaration again with exist_ok is fine
    backend.admin.create_topic(TopicSpec(name, 2, {"cleanup.policy": "compact"}), exist_ok=True)


@pytest.mark.parametrize(
    "declared",
    [
        TopicSpec("", 3, {"cleanup.policy": "compact"}),
        TopicSpec("", 2, {"cleanup.policy": "delete"}),
        TopicSpec("", 2, {}),  # no policy declared means the default, delete
    ],
    ids=["partitions", "cleanup-policy", "default-policy"],
)
def test_exist_ok_with_a_different_declaration_raises_topic_mismatch(
    backend: Backend, declared: TopicSpec
) -> None:
    name = backend.topic(2, {"cleanup.policy": "compact"})
    spec = TopicSpec(name, declared.partitions, declared.config)
    with pytest.raises(TopicMismatch):
        backend.admin.create_topic(spec, exist_ok=True)
    assert backend.admin.describe_topic(name).partitions == 2


def test_unknown_topic(backend: Backend) -> None:
    missing = backend.unique("missing")
    with pytest.raises(UnknownTopic):
        backend.admin.describe_topic(missing)
    with pytest.raises(UnknownTopic):
        backend.admin.delete_topic(missing)
    with pytest.raises(UnknownTopic):
        backend.admin.offsets(missing)


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "has space", "slash/name", "star*", "x" * 250, "ünïcode"],
)
def test_invalid_topic_name(backend: Backend, name: str) -> None:
    with pytest.raises(InvalidTopic):
        backend.admin.create_topic(TopicSpec(name, 1))


@pytest.mark.parametrize(
    ("partitions", "config"),
    [
        (0, {}),
        (-1, {}),
        (1, {"cleanup.policy": "shred"}),
        (1, {"retention.ms": "soon"}),
        (1, {"no.such.config": "1"}),
    ],
    ids=["zero-partitions", "negative-partitions", "bad-policy", "bad-number", "unknown-config"],
)
def test_invalid_partitions_or_config(
    backend: Backend, partitions: int, config: dict[str, str]
) -> None:
    name = backend.unique("invalid")
    with pytest.raises(InvalidTopic):
        backend.admin.create_topic(TopicSpec(name, partitions, config))
    assert name not in backend.admin.list_topics()


def test_alter_topic_grows_partitions_and_sets_config_but_never_shrinks(backend: Backend) -> None:
    admin = backend.admin
    name = backend.unique("alter")
    admin.create_topic(TopicSpec(name, 1, {"cleanup.policy": "delete", "retention.ms": "60000"}))

    admin.alter_topic(name, partitions=3, config={"retention.ms": "120000"})

    wait_until(lambda: admin.describe_topic(name).partitions == 3, backend.join_timeout)
    info = admin.describe_topic(name)
    assert info.config["retention.ms"] == "120000"
    assert info.config["cleanup.policy"] == "delete"
    assert sorted(admin.offsets(name)) == [0, 1, 2]
    with pytest.raises(InvalidTopic, match="cannot lose partitions"):
        admin.alter_topic(name, partitions=2)
    with pytest.raises(UnknownTopic):
        admin.alter_topic(backend.unique("absent"), config={"retention.ms": "1"})
