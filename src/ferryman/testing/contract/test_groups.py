"""Consumer groups in one process: commits, resets, seek/position, pause/resume, rebalances."""

from __future__ import annotations

import pytest

from ferryman.broker.base import Consumer
from ferryman.errors import CommitFailed
from ferryman.records import Record, TopicPartition
from ferryman.testing.contract.backend import FAST_SESSION, Backend
from ferryman.testing.contract.helpers import (
    POLL,
    consume_all,
    partitions_of,
    poll_together,
    produce_n,
)
from ferryman.testing.waiting import wait_until


class Member:
    """A group member that records its rebalance callbacks."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self.assigned: list[set[TopicPartition]] = []
        self.revoked: list[set[TopicPartition]] = []

    def subscribe(self, topic: str, on_revoke_also: object = None) -> None:
        def on_revoke(parts: set[TopicPartition]) -> None:
            self.revoked.append(set(parts))
            if callable(on_revoke_also):
                on_revoke_also(parts)

        self.consumer.subscribe(
            [topic], on_assign=lambda parts: self.assigned.append(set(parts)), on_revoke=on_revoke
        )

    def owns(self) -> set[TopicPartition]:
        return self.consumer.assignment()

    def ever_assigned(self) -> set[TopicPartition]:
        return set().union(*self.assigned)

    def ever_revoked(self) -> set[TopicPartition]:
        return set().union(*self.revoked)


def offsets_of(records: list[Record]) -> list[int]:
    return [r.offset for r in records]


def wait_assigned(
    backend: Backend, consumer: Consumer, expected: set[TopicPartition]
) -> list[Record]:
    """Poll until ``consumer`` owns exactly ``expected``; returns what it polled meanwhile."""
    return poll_together(
        [consumer],
        lambda: consumer.assignment() == expected,
        backend.join_timeout,
        consumer.assignment,
    )[0]


def test_committed_offset_is_the_next_read_by_a_new_member(backend: Backend) -> None:
    topic = backend.topic(1)
    produce_n(backend.producer(), topic, 20)
    group = backend.group()
    tp = TopicPartition(topic, 0)

    first = backend.consumer(group)
    first.subscribe([topic])
    assert offsets_of(consume_all(first, 20, backend.join_timeout)) == list(range(20))
    first.commit({tp: 12})
    first.close()

    second = backend.consumer(group)
    second.subscribe([topic])
    assert offsets_of(consume_all(second, 8, backend.join_timeout)) == list(range(12, 20))


@pytest.mark.parametrize("reset", ["earliest", "latest"])
def test_a_commit_wins_over_the_reset_policy(backend: Backend, reset: str) -> None:
    topic = backend.topic(1)
    produce_n(backend.producer(), topic, 10)
    group = backend.group()
    setter = backend.consumer(group)
    setter.subscribe([topic])
    consume_all(setter, 10, backend.join_timeout)
    setter.commit({TopicPartition(topic, 0): 4})
    setter.close()

    consumer = backend.consumer(group, auto_offset_reset=reset)  # type: ignore[arg-type]
    consumer.subscribe([topic])
    assert offsets_of(consume_all(consumer, 6, backend.join_timeout)) == list(range(4, 10))


def test_reset_to_earliest_without_a_commit(backend: Backend) -> None:
    topic = backend.topic(2)
    produce_n(backend.producer(), topic, 6, key=lambda i: b"k%d" % i)
    consumer = backend.consumer(backend.group(), auto_offset_reset="earliest")
    consumer.subscribe([topic])
    records = consume_all(consumer, 6, backend.join_timeout)
    assert sorted(r.value for r in records if r.value) == sorted(b"value-%d" % i for i in range(6))


def test_reset_to_latest_without_a_commit(backend: Backend) -> None:
    topic = backend.topic(1)
    producer = backend.producer()
    produce_n(producer, topic, 5)
    tp = TopicPartition(topic, 0)
    consumer = backend.consumer(backend.group(), auto_offset_reset="latest")
    consumer.subscribe([topic])
    polled = wait_assigned(backend, consumer, {tp})

    def at_end() -> bool:
        polled.extend(consumer.poll(POLL))
        return consumer.position(tp) == 5

    wait_until(at_end, backend.join_timeout, lambda: consumer.position(tp))
    assert polled == []

    produce_n(producer, topic, 3, value=lambda i: b"new-%d" % i)
    records = consume_all(consumer, 3, backend.join_timeout)
    assert [(r.offset, r.value) for r in records] == [(5, b"new-0"), (6, b"new-1"), (7, b"new-2")]


def test_seek_and_position(backend: Backend) -> None:
    topic = backend.topic(1)
    produce_n(backend.producer(), topic, 10)
    tp = TopicPartition(topic, 0)
    consumer = backend.consumer(backend.group())
    consumer.subscribe([topic])
    consume_all(consumer, 10, backend.join_timeout)
    assert consumer.position(tp) == 10

    consumer.seek(tp, 3)
    assert consumer.position(tp) == 3
    assert offsets_of(consume_all(consumer, 7, backend.join_timeout)) == list(range(3, 10))
    assert consumer.position(tp) == 10

    consumer.seek(tp, 8)
    assert offsets_of(consume_all(consumer, 2, backend.join_timeout)) == [8, 9]


def test_pause_and_resume(backend: Backend) -> None:
    topic = backend.topic(2)
    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    consumer = backend.consumer(backend.group())
    consumer.subscribe([topic])
    assert wait_assigned(backend, consumer, {tp0, tp1}) == []

    consumer.pause([tp0])
    producer = backend.producer()
    # the paused partition is written first, so a leak would show among what follows
    produce_n(producer, topic, 5, partition=0)
    produce_n(producer, topic, 5, partition=1)
    while_paused = consume_all(consumer, 5, backend.join_timeout)
    assert {r.partition for r in while_paused} == {1}
    assert consumer.assignment() == {tp0, tp1}, "pausing must not give partitions up"

    consumer.resume([tp0])
    resumed = consume_all(consumer, 5, backend.join_timeout)
    assert [(r.partition, r.offset) for r in resumed] == [(0, i) for i in range(5)]


def test_standalone_assign_without_a_group(backend: Backend) -> None:
    topic = backend.topic(2)
    producer = backend.producer()
    produce_n(producer, topic, 3, partition=0)
    produce_n(producer, topic, 4, partition=1)
    tp1 = TopicPartition(topic, 1)

    readers = [backend.consumer(None), backend.consumer(None)]
    for reader in readers:
        reader.assign([tp1])
        assert reader.assignment() == {tp1}
    # standalone readers do not share partitions: each reads all of partition 1
    for reader in readers:
        records = consume_all(reader, 4, backend.join_timeout)
        assert [(r.partition, r.offset) for r in records] == [(1, i) for i in range(4)]

    readers[0].seek(tp1, 2)
    assert offsets_of(consume_all(readers[0], 2, backend.join_timeout)) == [2, 3]


def test_members_joining_and_leaving_rebalance(backend: Backend) -> None:
    topic = backend.topic(4)
    everything = partitions_of(topic, 4)
    group = backend.group()
    a = Member(backend.consumer(group, config=FAST_SESSION))
    a.subscribe(topic)
    wait_assigned(backend, a.consumer, everything)
    assert a.ever_assigned() == everything

    b = Member(backend.consumer(group, config=FAST_SESSION))
    b.subscribe(topic)

    def split() -> bool:
        mine, theirs = a.owns(), b.owns()
        assert not mine & theirs, f"shared ownership: {mine} and {theirs}"
        return bool(mine) and bool(theirs) and mine | theirs == everything

    poll_together(
        [a.consumer, b.consumer], split, backend.join_timeout, lambda: (a.owns(), b.owns())
    )
    moved = b.owns()
    assert moved <= a.ever_revoked(), "the first member was not told what it lost"
    assert moved <= b.ever_assigned(), "the new member was not told what it got"

    # a member that lost a partition cannot commit for it; its new owner can
    lost = min(moved)
    with pytest.raises(CommitFailed):
        a.consumer.commit({lost: 0})
    b.consumer.commit({lost: 0})

    b.consumer.close()
    before = len(a.assigned)
    wait_assigned(backend, a.consumer, everything)
    assert set().union(*a.assigned[before:]) >= moved, "no on_assign for the returned partitions"


def test_commit_in_on_revoke_hands_over_without_redelivery(backend: Backend) -> None:
    topic = backend.topic(4)
    everything = partitions_of(topic, 4)
    produce_n(backend.producer(), topic, 40, key=lambda i: b"k%d" % i)
    group = backend.group()
    a = Member(backend.consumer(group, config=FAST_SESSION))

    def commit_positions(parts: set[TopicPartition]) -> None:
        a.consumer.commit({tp: a.consumer.position(tp) for tp in parts})

    a.subscribe(topic, on_revoke_also=commit_positions)
    consume_all(a.consumer, 40, backend.join_timeout)
    assert a.owns() == everything

    b = Member(backend.consumer(group, config=FAST_SESSION))
    b.subscribe(topic)
    got = poll_together(
        [a.consumer, b.consumer],
        lambda: bool(b.owns()) and not (a.owns() & b.owns()) and a.owns() | b.owns() == everything,
        backend.join_timeout,
        lambda: (a.owns(), b.owns()),
    )
    assert got == [[], []], "records committed in on_revoke were delivered again"
    latest = {p: o.latest for p, o in backend.admin.offsets(topic).items()}
    committed = backend.admin.committed(group, topic)
    assert {tp: committed.get(tp) for tp in b.owns()} == {
        tp: latest[tp.partition] for tp in b.owns()
    }

    # the new owner's first record on each partition is the next one written, not a re-delivery
    producer = backend.producer()
    for tp in b.owns():
        produce_n(producer, topic, 1, partition=tp.partition, value=lambda _: b"after")
    after = consume_all(b.consumer, len(b.owns()), backend.join_timeout)
    assert sorted((r.partition, r.offset, r.value) for r in after) == sorted(
        (tp.partition, latest[tp.partition], b"after") for tp in b.owns()
    )


def test_each_partition_has_exactly_one_owner_among_three_members(backend: Backend) -> None:
    topic = backend.topic(2)
    everything = partitions_of(topic, 2)
    group = backend.group()
    members = [backend.consumer(group, config=FAST_SESSION) for _ in range(3)]
    for m in members:
        m.subscribe([topic])

    def settled() -> bool:
        owned = [m.assignment() for m in members]
        # at no moment may two members own one partition
        assert sum(map(len, owned)) == len(set().union(*owned)), f"shared ownership: {owned}"
        return sorted(map(len, owned)) == [0, 1, 1]

    poll_together(members, settled, backend.join_timeout, lambda: [m.assignment() for m in members])
    assert set().union(*(m.assignment() for m in members)) == everything
