"""Consumer groups in the embedded broker: assignment, ownership, expiry and fencing."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing

import pytest
from tests.waiting import wait_until

from ferryman.broker.embedded import EmbeddedBroker
from ferryman.broker.embedded.consumer import EmbeddedConsumer
from ferryman.broker.embedded.group import assign
from ferryman.errors import CommitFailed, ConfigError
from ferryman.records import TopicPartition, TopicSpec

QUICK = {"session.timeout.ms": "400", "heartbeat.interval.ms": "50"}


def settle(
    consumers: list[EmbeddedConsumer], done: Callable[[], bool], timeout: float = 30
) -> None:
    """Poll every member in turn until ``done()``, or fail at the deadline."""

    def step() -> bool:
        if done():
            return True
        for c in consumers:
            c.poll(0.05)
        return False

    wait_until(step, timeout, lambda: [c.assignment() for c in consumers])


def tps(*partitions: int) -> set[TopicPartition]:
    return {TopicPartition("t", p) for p in partitions}


@pytest.mark.parametrize("strategy", ["range", "roundrobin"])
@pytest.mark.parametrize("members", [1, 2, 3, 5])
def test_assignment_gives_every_partition_to_exactly_one_member(
    strategy: str, members: int
) -> None:
    subs = [(f"m{i}", {"a", "b"} if i % 2 == 0 else {"a"}) for i in range(members)]
    sizes = {"a": 7, "b": 3}
    result = assign(subs, sizes, strategy)
    owned = [tp for parts in result.values() for tp in parts]
    assert sorted(owned) == sorted(TopicPartition(t, p) for t, n in sizes.items() for p in range(n))
    assert assign(list(reversed(subs)), sizes, strategy) == result  # order does not matter
    for member, topics in subs:
        assert {tp.topic for tp in result[member]} <= topics
    counts = [sum(tp.topic == "a" for tp in parts) for parts in result.values()]
    assert max(counts) - min(counts) <= (1 if strategy == "range" else 2)


def test_roundrobin_balances_across_topics() -> None:
    result = assign([("x", {"a", "b"}), ("y", {"a", "b"})], {"a": 1, "b": 1}, "roundrobin")
    assert {len(v) for v in result.values()} == {1}
    ranged = assign([("x", {"a", "b"}), ("y", {"a", "b"})], {"a": 1, "b": 1}, "range")
    assert {len(v) for v in ranged.values()} == {0, 2}


def test_revoke_runs_before_the_new_owner_gets_the_partition(broker: EmbeddedBroker) -> None:
    events: list[tuple[str, str, frozenset[TopicPartition]]] = []
    # members are ordered by id, which starts with client.id: first gets the lower partitions
    first = broker.consumer("g", config={**QUICK, "client.id": "a"})
    second = broker.consumer("g", config={**QUICK, "client.id": "b"})
    tp0 = TopicPartition("t", 0)

    def on_revoke(name: str, member: EmbeddedConsumer) -> Callable[[set[TopicPartition]], None]:
        def revoked(parts: set[TopicPartition]) -> None:
            events.append((name, "revoke", frozenset(parts)))
            member.commit(dict.fromkeys(parts, 0))  # still the owner: accepted

        return revoked

    first.subscribe(
        ["t"],
        on_assign=lambda p: events.append(("first", "assign", frozenset(p))),
        on_revoke=on_revoke("first", first),
    )
    settle([first], lambda: first.assignment() == tps(0, 1, 2, 3))
    second.subscribe(
        ["t"],
        on_assign=lambda p: events.append(("second", "assign", frozenset(p))),
        on_revoke=on_revoke("second", second),
    )
    settle([first, second], lambda: second.assignment() == tps(2, 3))
    assert first.assignment() == tps(0, 1)
    assert events[-2:] == [
        ("first", "revoke", frozenset(tps(2, 3))),
        ("second", "assign", frozenset(tps(2, 3))),
    ]
    with pytest.raises(CommitFailed, match="no longer owns"):
        first.commit({TopicPartition("t", 3): 1})
    first.commit({tp0: 1})
    second.close()
    settle([first], lambda: first.assignment() == tps(0, 1, 2, 3))


def test_a_silent_member_is_expired_fenced_and_rejoins(broker: EmbeddedBroker) -> None:
    # "silent" never heartbeats on its own, so it misses its session unless it polls
    silent = broker.consumer(
        "g", config={"session.timeout.ms": "300", "heartbeat.interval.ms": "3600000"}
    )
    live = broker.consumer("g", config=QUICK)
    revoked: list[set[TopicPartition]] = []
    silent.subscribe(["t"], on_revoke=revoked.append)
    live.subscribe(["t"])
    settle([silent, live], lambda: len(silent.assignment()) == len(live.assignment()) == 2)
    mine = silent.assignment()

    # only live polls now: its heartbeats declare silent dead and it takes everything
    settle([live], lambda: live.assignment() == tps(0, 1, 2, 3))
    with pytest.raises(CommitFailed):
        silent.commit(dict.fromkeys(mine, 1))

    # on its next poll silent learns it was fenced, gives up its partitions and rejoins
    silent.poll(0)
    assert revoked[-1] == mine
    settle([silent, live], lambda: len(silent.assignment()) == len(live.assignment()) == 2)


def test_a_dead_member_is_expired_after_the_wall_clock_was_set_back(
    broker: EmbeddedBroker,
) -> None:
    # heartbeats are wall-clock times shared between processes; a member that died just after
    # the clock was set back an hour has a last heartbeat an hour "in the future"
    dead = broker.consumer(
        "g", config={"session.timeout.ms": "300", "heartbeat.interval.ms": "3600000"}
    )
    live = broker.consumer("g", config=QUICK)
    dead.subscribe(["t"])
    live.subscribe(["t"])
    settle([dead, live], lambda: len(dead.assignment()) == len(live.assignment()) == 2)
    with closing(sqlite3.connect(broker.path)) as conn, conn:
        conn.execute(
            "UPDATE members SET heartbeat_ms = heartbeat_ms + 3600000 WHERE member_id = ?",
            (dead.member_id,),
        )
    settle([live], lambda: live.assignment() == tps(0, 1, 2, 3), timeout=10)


def test_a_member_that_stops_polling_gives_its_partitions_up(broker: EmbeddedBroker) -> None:
    # its heartbeats go on, but a handler stuck for max.poll.interval.ms must not hold its
    # partitions forever
    stuck = broker.consumer("g", config={**QUICK, "max.poll.interval.ms": "300"})
    live = broker.consumer("g", config=QUICK)
    revoked: list[set[TopicPartition]] = []
    stuck.subscribe(["t"], on_revoke=revoked.append)
    live.subscribe(["t"])
    settle([stuck, live], lambda: len(stuck.assignment()) == len(live.assignment()) == 2)
    mine = stuck.assignment()

    settle([live], lambda: live.assignment() == tps(0, 1, 2, 3), timeout=10)
    with pytest.raises(CommitFailed):
        stuck.commit(dict.fromkeys(mine, 1))
    # polling again, it is told what it lost and rejoins
    stuck.poll(0)
    assert revoked[-1] == mine
    settle([stuck, live], lambda: len(stuck.assignment()) == len(live.assignment()) == 2)


def test_waiting_inside_a_long_poll_is_not_being_stuck(broker: EmbeddedBroker) -> None:
    member = broker.consumer("g", config={**QUICK, "max.poll.interval.ms": "300"})
    revoked: list[set[TopicPartition]] = []
    member.subscribe(["t"], on_revoke=revoked.append)
    settle([member], lambda: member.assignment() == tps(0, 1, 2, 3))
    assert member.poll(1.0) == []  # several max.poll.interval.ms, all spent inside poll
    assert not revoked
    assert member.assignment() == tps(0, 1, 2, 3)


def test_pause_and_resume(broker: EmbeddedBroker) -> None:
    producer = broker.producer()
    for p in range(2):
        producer.send("t", b"p%d" % p, partition=p)
    producer.flush(10)
    consumer = broker.consumer("g")
    consumer.assign(tps(0, 1))
    consumer.pause(tps(0))
    assert [r.value for r in consumer.poll(1)] == [b"p1"]
    assert consumer.poll(0.05) == []
    consumer.resume(tps(0))
    assert [r.value for r in consumer.poll(1)] == [b"p0"]


def test_group_misuse_says_what_to_do(broker: EmbeddedBroker) -> None:
    standalone = broker.consumer(None)
    with pytest.raises(ConfigError, match="group_id"):
        standalone.subscribe(["t"])
    with pytest.raises(CommitFailed, match="without a group"):
        standalone.commit({TopicPartition("t", 0): 1})
    with pytest.raises(ConfigError, match=r"session\.timeout\.ms"):
        broker.consumer("g", config={"session.timeout.ms": "0"})
    with pytest.raises(ConfigError, match=r"partition\.assignment\.strategy"):
        broker.consumer("g", config={"partition.assignment.strategy": "sticky-ish"})
    member = broker.consumer("g")
    member.subscribe(["t"])
    with pytest.raises(ConfigError, match="assign"):
        member.assign(tps(0))


def test_subscriptions_follow_topics_created_later_and_changed_subscriptions(
    broker: EmbeddedBroker,
) -> None:
    assigned: list[set[TopicPartition]] = []
    revoked: list[set[TopicPartition]] = []
    member = broker.consumer("g", config=QUICK)
    member.subscribe(["later"], on_assign=assigned.append, on_revoke=revoked.append)
    assert member.poll(0) == []
    assert member.assignment() == set()

    broker.admin().create_topic(TopicSpec("later", 2))
    later = {TopicPartition("later", 0), TopicPartition("later", 1)}
    settle([member], lambda: member.assignment() == later)
    assert assigned == [later]

    member.subscribe(["t"], on_assign=assigned.append, on_revoke=revoked.append)
    settle([member], lambda: member.assignment() == tps(0, 1, 2, 3))
    assert revoked == [later]
    assert assigned[-1] == tps(0, 1, 2, 3)
