"""Group administration: list groups, their live members and assignments, reset offsets."""

from __future__ import annotations

import pytest

from ferryman.errors import GroupBusy
from ferryman.records import TopicPartition, TopicSpec
from ferryman.testing.contract.backend import FAST_SESSION, Backend
from ferryman.testing.waiting import wait_until


def test_members_are_listed_and_a_reset_waits_for_them_to_leave(backend: Backend) -> None:
    admin = backend.admin
    topic = backend.unique("grpadmin")
    group = backend.unique("grpadmin-g")
    admin.create_topic(TopicSpec(topic, 2))
    producer = backend.producer()
    for i in range(4):
        producer.send(topic, b"v", key=str(i).encode()).result()

    consumer = backend.consumer(group, config=FAST_SESSION)
    consumer.subscribe([topic])

    def owns_both() -> bool:
        consumer.poll(0.2)
        return len(consumer.assignment()) == 2

    wait_until(owns_both, backend.join_timeout, consumer.assignment)
    consumer.commit({TopicPartition(topic, 0): 1})

    wait_until(lambda: group in admin.list_groups(), backend.join_timeout, admin.list_groups)
    members = wait_until(
        lambda: admin.group_members(group), backend.join_timeout, lambda: "no member"
    )
    assert len(members) == 1
    assert members[0].assignment == {TopicPartition(topic, 0), TopicPartition(topic, 1)}

    with pytest.raises(GroupBusy, match="live member"):
        admin.reset_offsets(group, {TopicPartition(topic, 0): 0})

    consumer.close()
    wait_until(lambda: not admin.group_members(group), backend.join_timeout, lambda: "members")
    admin.reset_offsets(group, {TopicPartition(topic, 0): 0, TopicPartition(topic, 1): 2})
    assert admin.committed(group, topic) == {
        TopicPartition(topic, 0): 0,
        TopicPartition(topic, 1): 2,
    }
    assert admin.group_members(backend.unique("nobody")) == []
