"""The relay: commit order per partition, delete after acknowledgement, no skipped rows,
partitions split between relays by lease, and wake-ups."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from concurrent.futures import Future

import pytest
from sqlalchemy import func, insert, select

from ferryman.broker.base import Broker
from ferryman.records import Headers, RecordMetadata, TopicPartition
from ferryman.stores import Database, Outbox, OutboxRecord, Relay
from ferryman.stores.leases import leases_table
from ferryman.stores.outbox import encode_headers

from .outbox_helpers import FailingProducer, log, new_topic, read_all, wait_until

__all__ = ["log"]  # the fixture, imported for the tests below


def remaining(database: Database) -> int:
    t = Outbox(database, {}).table
    with database.begin() as conn:
        return int(conn.scalar(select(func.count()).select_from(t)) or 0)


def write(
    outbox: Outbox, topic: str, items: list[tuple[bytes, bytes]], spread: int | None = None
) -> None:
    """One transaction per record, so ids follow commit order; ``spread``: the i-th record goes
    to partition ``i % spread`` instead of its key's."""
    for i, (key, value) in enumerate(items):
        partition = None if spread is None else i % spread
        with outbox.database.begin() as conn:
            outbox.write(conn, OutboxRecord(topic, key, value, (("n", value),), None, partition))


def test_relay_publishes_in_commit_order_and_deletes_after_ack(
    database: Database, log: Broker
) -> None:
    topic = new_topic(log, 3)
    outbox = Outbox(database, {topic: 3})
    database.create_missing()
    items = [(f"k{i % 5}".encode(), str(i).encode()) for i in range(60)]
    write(outbox, topic, items)
    producer = log.producer()
    relay = Relay(database, producer, batch=7)
    total = 0
    while (n := relay.run_once()) > 0 or remaining(database):
        total += n
    relay.close()
    producer.close()
    assert total == 60
    got = read_all(log, topic, 60)
    assert len(got) == 60
    per_key: dict[bytes | None, list[int]] = defaultdict(list)
    for record in got:
        per_key[record.key].append(int(record.value or b""))
        assert record.headers == (("n", record.value),)
    for key, values in per_key.items():
        assert values == sorted(values), f"key {key!r} out of commit order"
    assert remaining(database) == 0


def test_rows_stay_until_acknowledged_and_go_again_in_order(
    database: Database, log: Broker
) -> None:
    topic = new_topic(log, 1)
    outbox = Outbox(database, {topic: 1})
    database.create_missing()
    write(outbox, topic, [(b"k", str(i).encode()) for i in range(10)])
    inner = log.producer()
    relay = Relay(database, FailingProducer(inner, fail_at=4), batch=10)
    assert relay.run_once() == 4  # rows 0-3 acknowledged, 4 failed: 4..9 stay
    assert remaining(database) == 6
    assert relay.run_once() == 6
    assert remaining(database) == 0
    relay.close()
    inner.close()
    # This fake drops record 4 alone; a real producer (Kafka's idempotent one, the embedded
    # one) fails the later records of the partition with it, so the log keeps commit order.
    got = [int(r.value or b"") for r in read_all(log, topic, 9 + 6)]
    assert got[:4] == [0, 1, 2, 3]
    assert got[-6:] == [4, 5, 6, 7, 8, 9], "the failed record and all later ones go again"


def test_a_row_committed_late_with_a_lower_id_is_relayed(database: Database, log: Broker) -> None:
    # A naive relay that remembers the highest id it sent and asks for `id > last` skips row 5.
    topic = new_topic(log, 1)
    outbox = Outbox(database, {topic: 1})
    database.create_missing()
    row = {"topic": topic, "partition": 0, "key": b"k", "headers": encode_headers(())}
    with database.begin() as conn:
        conn.execute(insert(outbox.table), {**row, "id": 10, "value": b"ten", **_stamps()})
    producer = log.producer()
    relay = Relay(database, producer)
    assert relay.run_once() == 1
    with database.begin() as conn:  # the late transaction, which took its id earlier
        conn.execute(insert(outbox.table), {**row, "id": 5, "value": b"five", **_stamps()})
    assert relay.run_once() == 1
    relay.close()
    producer.close()
    assert [r.value for r in read_all(log, topic, 2)] == [b"ten", b"five"]


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_concurrent_writers_on_postgres_late_commit_is_relayed(
    database: Database, log: Broker
) -> None:
    topic = new_topic(log, 2)
    outbox = Outbox(database, {topic: 2})
    database.create_missing()
    producer = log.producer()
    relay = Relay(database, producer)
    late = database.engine.connect()
    late_tx = late.begin()
    outbox.write(late, OutboxRecord(topic, None, b"early id, late commit", partition=0))
    with database.begin() as conn:
        outbox.write(conn, OutboxRecord(topic, None, b"later id, early commit", partition=1))
    assert relay.run_once() == 1  # the uncommitted row is invisible
    late_tx.commit()
    late.close()
    assert relay.run_once() == 1
    relay.close()
    producer.close()
    assert {r.value for r in read_all(log, topic, 2)} == {
        b"early id, late commit",
        b"later id, early commit",
    }


class Recorder:
    """A producer wrapper that records who sent each record and catches two relays sending to
    one partition at the same time."""

    def __init__(self, inner: object, name: str, shared: dict[str, object]) -> None:
        self.inner = inner
        self.name = name
        self.shared = shared

    def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Headers = (),
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> Future[RecordMetadata]:
        lock: threading.Lock = self.shared["lock"]  # type: ignore[assignment]
        sending: dict[int | None, tuple[str, float]] = self.shared["sending"]  # type: ignore[assignment]
        clashes: list[str] = self.shared["clashes"]  # type: ignore[assignment]
        sent: list[tuple[str, int | None, bytes | None]] = self.shared["sent"]  # type: ignore[assignment]
        now = time.monotonic()
        with lock:
            other = sending.get(partition)
            if other and other[0] != self.name and now - other[1] < 0.5:
                clashes.append(f"{self.name} and {other[0]} both sent to partition {partition}")
            sending[partition] = (self.name, now)
            sent.append((self.name, partition, value))
        send = self.inner.send  # type: ignore[attr-defined]
        result: Future[RecordMetadata] = send(
            topic, value, key=key, headers=headers, partition=partition, timestamp=timestamp
        )
        return result


def test_two_relays_split_the_partitions_and_never_send_a_row_twice(
    database: Database, log: Broker
) -> None:
    topic = new_topic(log, 8)
    outbox = Outbox(database, {topic: 8})
    database.create_missing()
    shared: dict[str, object] = {"lock": threading.Lock(), "sending": {}, "clashes": [], "sent": []}
    producer = log.producer()
    stop = threading.Event()
    relays = [
        Relay(database, Recorder(producer, name, shared), batch=20, name=name, poll_interval=0.02)
        for name in ("relay-a", "relay-b")
    ]
    # Both relays announce themselves before rows arrive, so neither takes all partitions first.
    for relay in relays:
        with database.begin() as conn:
            relay.leases.assign(conn, [], int(time.time() * 1000))
    threads = [threading.Thread(target=r.run, args=(stop,)) for r in relays]
    for thread in threads:
        thread.start()
    try:
        for i in range(40):
            with database.begin() as conn:
                outbox.write(
                    conn,
                    *(OutboxRecord(topic, f"k{j}".encode(), f"{i}/{j}".encode()) for j in range(8)),
                )
        wait_until(lambda: remaining(database) == 0, 60, "the relays to empty the outbox")
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        for relay in relays:
            relay.close()
        producer.close()
    sent: list[tuple[str, int | None, bytes | None]] = shared["sent"]  # type: ignore[assignment]
    values = [value for _, _, value in sent]
    assert len(values) == len(set(values)) == 320, "a row was sent twice, or lost"
    by_relay: dict[str, set[int | None]] = defaultdict(set)
    for name, partition, _ in sent:
        by_relay[name].add(partition)
    assert set(by_relay) == {"relay-a", "relay-b"}, f"one relay did all the work: {by_relay}"
    assert shared["clashes"] == []
    assert len(read_all(log, topic, 320)) == 320


def test_a_dead_relay_loses_its_lease_and_another_continues(
    database: Database, log: Broker
) -> None:
    topic = new_topic(log, 4)
    outbox = Outbox(database, {topic: 4})
    database.create_missing()
    write(outbox, topic, [(f"k{i}".encode(), str(i).encode()) for i in range(8)], spread=4)
    producer = log.producer()
    dead = Relay(database, producer, batch=1, lease_seconds=1.0, name="dead")
    assert dead.run_once() == 4  # one row of each partition, then it "dies": no close()
    with database.begin() as conn:
        assert len(dead.leases.held(conn, _ms())) == 4
    write(outbox, topic, [(f"k{i}".encode(), str(i).encode()) for i in range(8, 12)], spread=4)
    heir = Relay(database, producer, name="heir")
    assert heir.run_once() == 0, "the dead relay's leases have not expired yet"
    wait_until(lambda: heir.run_once() >= 0 and remaining(database) == 0, 30, "the heir")
    heir.close()
    producer.close()
    t = leases_table(database.metadata)
    with database.begin() as conn:
        assert list(conn.execute(select(t.c.owner).where(t.c.owner == "dead"))) == []
    assert sorted(int(r.value or b"") for r in read_all(log, topic, 12)) == list(range(12))


def test_close_hands_the_partitions_over_at_once(database: Database, log: Broker) -> None:
    topic = new_topic(log, 2)
    outbox = Outbox(database, {topic: 2})
    database.create_missing()
    write(outbox, topic, [(b"a", b"1"), (b"b", b"2")])
    producer = log.producer()
    first = Relay(database, producer, lease_seconds=600)
    first.run_once()
    first.close()
    write(outbox, topic, [(b"a", b"3"), (b"b", b"4")])
    second = Relay(database, producer, lease_seconds=600)
    assert second.run_once() == 2
    second.close()
    producer.close()


def test_a_commit_wakes_a_running_relay(database: Database, log: Broker) -> None:
    # The fallback poll is 60 s: the record arrives within the deadline only through the
    # wake-up (LISTEN/NOTIFY on PostgreSQL, the in-process event on SQLite).
    topic = new_topic(log, 1)
    outbox = Outbox(database, {topic: 1})
    database.create_missing()
    producer = log.producer()
    relay = Relay(database, producer, poll_interval=60)
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,))
    thread.start()
    try:
        time.sleep(0.3)  # let the relay find the outbox empty and start waiting
        with database.sessions.begin() as session:
            outbox.write(session, OutboxRecord(topic, b"k", b"wake up"))
        wait_until(lambda: remaining(database) == 0, 20, "the relay to wake up")
    finally:
        stop.set()
        with database.sessions.begin() as session:  # wake it so that it sees stop
            outbox.write(session, OutboxRecord(topic, b"k", b"bye"))
        thread.join(30)
        relay.close()
        producer.close()
    assert not thread.is_alive()
    assert read_all(log, topic, 1)[0].value == b"wake up"


def test_relay_limited_to_some_partitions_leaves_the_others(
    database: Database, log: Broker
) -> None:
    topic = new_topic(log, 2)
    outbox = Outbox(database, {topic: 2})
    database.create_missing()
    with database.begin() as conn:
        outbox.write(conn, OutboxRecord(topic, b"a", b"0", partition=0))
        outbox.write(conn, OutboxRecord(topic, b"b", b"1", partition=1))
    producer = log.producer()
    relay = Relay(database, producer, partitions=[TopicPartition(topic, 1)])
    assert relay.run_once() == 1
    assert relay.run_once() == 0
    assert remaining(database) == 1
    relay.close()
    producer.close()


def _ms() -> int:
    return int(time.time() * 1000)


def _stamps() -> dict[str, object]:
    import datetime as dt

    return {"timestamp_ms": _ms(), "created_at": dt.datetime.now(dt.UTC)}


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_postgres_writers_of_one_partition_commit_in_id_order(
    database: Database, log: Broker
) -> None:
    # Without the partition lock, B (a later id) could commit before A (an earlier id), and a
    # relay reading both afterwards would publish A before B: against commit order.
    topic = new_topic(log, 1)
    outbox = Outbox(database, {topic: 1})
    database.create_missing()
    a = database.engine.connect()
    a_tx = a.begin()
    outbox.write(a, OutboxRecord(topic, b"k", b"A"))
    b_done = threading.Event()

    def writer_b() -> None:
        with database.begin() as conn:
            outbox.write(conn, OutboxRecord(topic, b"k", b"B"))
        b_done.set()

    thread = threading.Thread(target=writer_b)
    thread.start()
    with database.begin() as conn:

        def b_waits_for_the_lock() -> bool:
            query = "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'advisory'"
            return bool(conn.exec_driver_sql(query).scalar())

        wait_until(b_waits_for_the_lock, 20, "writer B to wait for A's partition lock")
    assert not b_done.is_set()
    a_tx.commit()
    a.close()
    thread.join(20)
    assert b_done.is_set()
    producer = log.producer()
    relay = Relay(database, producer)
    assert relay.run_once() == 2
    relay.close()
    producer.close()
    assert [r.value for r in read_all(log, topic, 2)] == [b"A", b"B"]
