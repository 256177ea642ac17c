"""The cleaner on a fake clock: compaction, tombstones, min.compaction.lag.ms, retention."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import closing
from pathlib import Path

import pytest
from tests.waiting import wait_until

from ferryman.broker.embedded import EmbeddedBroker
from ferryman.broker.embedded.cleaner import Cleaner, pid_namespace
from ferryman.broker.embedded.storage import Store
from ferryman.broker.embedded.wakeup import Notifier
from ferryman.records import PartitionOffsets, Record, TopicPartition, TopicSpec

HOUR = 3_600_000


class Clock:
    """Milliseconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def broker(tmp_path: Path, clock: Clock) -> Iterator[EmbeddedBroker]:
    b = EmbeddedBroker(tmp_path / "broker.db", clock=clock, cleaner_interval=None)
    yield b
    b.close()


def read_all(broker: EmbeddedBroker, topic: str, partition: int = 0) -> list[Record]:
    consumer = broker.consumer(None)
    consumer.assign([TopicPartition(topic, partition)])
    end = broker.admin().offsets(topic)[partition].latest
    out: list[Record] = []
    while True:
        batch = consumer.poll(0)
        out += batch
        if not batch or consumer.position(TopicPartition(topic, partition)) >= end:
            break
    consumer.close()
    return out


def send(
    broker: EmbeddedBroker, topic: str, items: Sequence[tuple[bytes | None, bytes | None]]
) -> None:
    producer = broker.producer()
    for key, value in items:
        producer.send(topic, value, key=key, partition=0)
    producer.close(10)


def compacted(broker: EmbeddedBroker, config: dict[str, str] | None = None) -> str:
    broker.admin().create_topic(
        TopicSpec(
            "c",
            1,
            {"cleanup.policy": "compact", "delete.retention.ms": str(HOUR), **(config or {})},
        )
    )
    return "c"


def test_compaction_keeps_the_last_record_of_each_key_in_offset_order(
    broker: EmbeddedBroker, clock: Clock
) -> None:
    topic = compacted(broker)
    writes = [(b"k%d" % (i % 7), b"v%d" % i) for i in range(100)] + [(None, b"unkeyed")]
    send(broker, topic, writes)
    clock.advance(1)
    broker.clean()

    records = read_all(broker, topic)
    survivors = {r.key: r.value for r in records}
    expected = {key: value for key, value in writes}
    assert survivors == expected
    assert [r.offset for r in records] == sorted(r.offset for r in records)
    assert len(records) == 8  # 7 keys and the unkeyed record
    assert [r.offset for r in records if r.key is not None] == list(range(93, 100))
    assert broker.admin().offsets(topic)[0] == PartitionOffsets(0, 101)


def test_a_second_pass_compacts_what_arrived_since(broker: EmbeddedBroker, clock: Clock) -> None:
    topic = compacted(broker)
    send(broker, topic, [(b"a", b"1"), (b"a", b"2")])
    broker.clean()
    send(broker, topic, [(b"a", b"3"), (b"b", b"1")])
    clock.advance(1)
    broker.clean()
    assert [(r.offset, r.value) for r in read_all(broker, topic)] == [(2, b"3"), (3, b"1")]


def test_tombstones_survive_delete_retention_after_cleaning(
    broker: EmbeddedBroker, clock: Clock
) -> None:
    topic = compacted(broker)
    send(broker, topic, [(b"gone", b"v1"), (b"kept", b"v"), (b"gone", None)])
    broker.clean()
    assert [(r.key, r.value) for r in read_all(broker, topic)] == [(b"kept", b"v"), (b"gone", None)]

    clock.advance(HOUR - 1)
    broker.clean()
    assert (b"gone", None) in [(r.key, r.value) for r in read_all(broker, topic)]

    clock.advance(1)
    broker.clean()
    assert [(r.key, r.value) for r in read_all(broker, topic)] == [(b"kept", b"v")]


def test_records_newer_than_the_compaction_lag_are_not_compacted(
    broker: EmbeddedBroker, clock: Clock
) -> None:
    topic = compacted(broker, {"min.compaction.lag.ms": "60000"})
    send(broker, topic, [(b"k", b"old"), (b"k", b"older-but-cleanable")])
    clock.advance(60_000)
    send(broker, topic, [(b"k", b"new")])
    broker.clean()
    # the first two are past the lag: only the later of them stays; "new" is within the lag
    # and does not count as a later write yet
    assert [r.value for r in read_all(broker, topic)] == [b"older-but-cleanable", b"new"]

    clock.advance(60_000)
    broker.clean()
    assert [r.value for r in read_all(broker, topic)] == [b"new"]


def test_headers_and_null_values_survive_compaction_rewrites(
    broker: EmbeddedBroker, clock: Clock
) -> None:
    topic = compacted(broker)
    producer = broker.producer()
    producer.send(topic, b"x", key=b"k", headers=(("a", b"1"),))
    producer.send(topic, b"", key=b"e", headers=(("b", b"\x00" * 3), ("b", b"")))
    producer.send(topic, b"y", key=b"k", headers=(("c", b"\xff"),))
    producer.close(10)
    broker.clean()
    records = read_all(broker, topic)
    assert [(r.key, r.value, r.headers, r.offset) for r in records] == [
        (b"e", b"", (("b", b"\x00\x00\x00"), ("b", b"")), 1),
        (b"k", b"y", (("c", b"\xff"),), 2),
    ]


def test_retention_by_time_advances_the_log_start(broker: EmbeddedBroker, clock: Clock) -> None:
    broker.admin().create_topic(TopicSpec("e", 1, {"retention.ms": str(HOUR)}))
    send(broker, "e", [(None, b"old-%d" % i) for i in range(5)])
    clock.advance(HOUR // 2)
    send(broker, "e", [(None, b"new-%d" % i) for i in range(3)])

    clock.advance(HOUR // 2)
    broker.clean()  # the old ones are exactly retention.ms old: kept
    assert broker.admin().offsets("e")[0] == PartitionOffsets(0, 8)

    clock.advance(1)
    broker.clean()
    assert broker.admin().offsets("e")[0] == PartitionOffsets(5, 8)
    assert [r.value for r in read_all(broker, "e")] == [b"new-0", b"new-1", b"new-2"]


def test_retention_by_size_keeps_at_least_the_limit(broker: EmbeddedBroker, clock: Clock) -> None:
    broker.admin().create_topic(TopicSpec("e", 1, {"retention.bytes": "250"}))
    producer = broker.producer()
    for i in range(10):  # ten separate batches of 100 bytes
        producer.send("e", bytes([i]) * 100).result(10)
    producer.close(10)
    broker.clean()
    assert broker.admin().offsets("e")[0] == PartitionOffsets(7, 10)
    assert [r.value[:1] for r in read_all(broker, "e") if r.value] == [b"\x07", b"\x08", b"\x09"]


@pytest.mark.parametrize(("reset", "first"), [("earliest", b"new"), ("latest", None)])
def test_a_consumer_whose_position_fell_off_the_log_resets(
    broker: EmbeddedBroker, clock: Clock, reset: str, first: bytes | None
) -> None:
    broker.admin().create_topic(TopicSpec("e", 1, {"retention.ms": "1000"}))
    send(broker, "e", [(None, b"old-1"), (None, b"old-2")])
    tp = TopicPartition("e", 0)
    consumer = broker.consumer("g", auto_offset_reset=reset)  # type: ignore[arg-type]
    consumer.assign([tp])
    consumer.seek(tp, 0)
    assert [r.value for r in consumer.poll(5, max_records=1)] == [b"old-1"]
    consumer.commit({tp: 1})

    clock.advance(2000)
    send(broker, "e", [(None, b"new")])
    broker.clean()
    assert broker.admin().offsets("e")[0] == PartitionOffsets(2, 3)
    # the buffered old record was read before the clean; past it, the position is off the log
    consumer.seek(tp, 1)
    got = consumer.poll(0.5)
    assert (got[0].value if got else None) == first
    assert consumer.position(tp) == 3
    # a fresh member with the stale commit resets the same way
    fresh = broker.consumer("g", auto_offset_reset=reset)  # type: ignore[arg-type]
    fresh.assign([tp])
    assert fresh.position(tp) == (2 if reset == "earliest" else 3)


def test_the_background_cleaner_runs_without_being_asked(tmp_path: Path) -> None:
    broker = EmbeddedBroker(tmp_path / "b.db", cleaner_interval=0.05)
    try:
        broker.admin().create_topic(TopicSpec("c", 1, {"cleanup.policy": "compact"}))
        send(broker, "c", [(b"k", b"1"), (b"k", b"2")])
        wait_until(
            lambda: [r.value for r in read_all(broker, "c")] == [b"2"],
            30,
            "a background compaction",
        )
    finally:
        broker.close()


def test_compaction_over_many_rows_rewrites_them_in_chunks(
    broker: EmbeddedBroker, clock: Clock
) -> None:
    topic = compacted(broker)
    producer = broker.producer()
    for i in range(450):  # one row per record: more rows than one rewrite chunk
        producer.send(topic, b"%d" % i, key=b"k%d" % (i % 10), partition=0).result(10)
    producer.close(10)
    broker.clean()
    records = read_all(broker, topic)
    assert [(r.key, r.value) for r in records] == [
        (b"k%d" % (i % 10), b"%d" % i) for i in range(440, 450)
    ]
    # the size retention.bytes relies on shrank with the removed records
    with closing(sqlite3.connect(broker.path)) as conn:
        (size,) = conn.execute("SELECT size FROM partitions WHERE topic = ?", (topic,)).fetchone()
    assert size == sum(len(r.key or b"") + len(r.value or b"") for r in records)


def set_lease(path: str, holder: str) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES ('cleaner', ?)",
            (f"{holder} {2**62}",),
        )


def test_a_lease_left_by_a_dead_cleaner_is_taken_over(broker: EmbeddedBroker, clock: Clock) -> None:
    topic = compacted(broker)
    send(broker, topic, [(b"k", b"1"), (b"k", b"2")])
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], check=True, capture_output=True
    )
    set_lease(broker.path, f"{int(gone.stdout)}-{pid_namespace()}-someone")
    broker.clean()
    assert [r.value for r in read_all(broker, topic)] == [b"2"]


def assert_another_cleaner_stands_back(broker: EmbeddedBroker, topic: str, clock: Clock) -> None:
    """A second cleaner on the same file neither cleans nor removes the topic's two records."""
    store = Store(broker.path)
    notifier = Notifier(store.wake_dir)
    other = Cleaner(store, notifier, clock)
    try:
        assert not other.clean(wait=False)
        assert len(read_all(broker, topic)) == 2
    finally:
        other.close()
        notifier.close()


def test_a_lease_held_from_another_pid_namespace_is_respected_until_it_expires(
    broker: EmbeddedBroker, clock: Clock
) -> None:
    # a cleaner in another container sharing the file: its pid means nothing here
    topic = compacted(broker)
    send(broker, topic, [(b"k", b"1"), (b"k", b"2")])
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], check=True, capture_output=True
    )
    set_lease(broker.path, f"{int(gone.stdout)}-1-elsewhere")
    assert_another_cleaner_stands_back(broker, topic, clock)


def test_a_live_cleaners_lease_is_respected(broker: EmbeddedBroker, clock: Clock) -> None:
    topic = compacted(broker)
    send(broker, topic, [(b"k", b"1"), (b"k", b"2")])
    set_lease(broker.path, f"{os.getpid()}-{pid_namespace()}-another-cleaner")
    assert_another_cleaner_stands_back(broker, topic, clock)


def test_the_position_steps_over_records_compacted_away_at_the_end(
    broker: EmbeddedBroker, clock: Clock
) -> None:
    topic = compacted(broker, {"delete.retention.ms": "0"})
    send(broker, topic, [(b"a", b"1"), (b"b", b"1"), (b"b", None)])
    broker.clean()
    clock.advance(1)
    broker.clean()  # the tombstone, and with it offsets 1 and 2, are gone
    tp = TopicPartition(topic, 0)
    consumer = broker.consumer(None)
    consumer.assign([tp])
    consumer.seek(tp, 1)
    assert consumer.poll(0) == []
    assert consumer.position(tp) == 3


def test_a_record_within_the_lag_stops_cleaning_so_a_deleted_key_never_comes_back(
    broker: EmbeddedBroker, clock: Clock
) -> None:
    # timestamps are the producer's (event time): a record stamped later than the ones after it
    # must not let the cleaner drop a tombstone and leave an older value as the key's last
    topic = compacted(broker, {"min.compaction.lag.ms": "60000"})
    producer = broker.producer()
    producer.send(topic, b"old", key=b"k", partition=0)
    producer.send(topic, b"future", key=b"k", partition=0, timestamp=clock.now + 10 * HOUR)
    producer.send(topic, None, key=b"k", partition=0)
    producer.close(10)
    for _ in range(3):
        clock.advance(HOUR)
        broker.clean()
    values = [r.value for r in read_all(broker, topic) if r.key == b"k"]
    assert values, "the tombstone went before the record stamped later"
    assert values[-1] is None, f"the key's last write was a delete, read {values}"


def test_seeking_into_a_gap_inside_a_compacted_batch_row_reads_on_from_the_next_record(
    broker: EmbeddedBroker, clock: Clock
) -> None:
    topic = compacted(broker)
    # one batch row: a@0 b@1 a@2 c@3 b@4 d@5; compaction leaves a@2 c@3 b@4 d@5 in that row
    send(broker, topic, [(b"a", b"1"), (b"b", b"1"), (b"a", b"2"), (b"c", b"1"), (b"b", b"2")])
    send(broker, topic, [(b"d", b"1")])
    clock.advance(1)
    broker.clean()
    with closing(sqlite3.connect(broker.path)) as conn:
        rows = conn.execute("SELECT count, deltas IS NOT NULL FROM batches ORDER BY id").fetchall()
    assert rows == [(3, 1), (1, 0)]
    tp = TopicPartition(topic, 0)
    consumer = broker.consumer(None)
    consumer.assign([tp])
    for start, expected in [(0, [2, 3, 4, 5]), (1, [2, 3, 4, 5]), (3, [3, 4, 5]), (5, [5])]:
        consumer.seek(tp, start)
        assert [r.offset for r in consumer.poll(5)] == expected, f"from {start}"
        assert consumer.position(tp) == 6
    consumer.close()


@pytest.mark.parametrize(("reset", "expected"), [("earliest", [0, 1, 2]), ("latest", [])])
def test_a_seek_beyond_the_end_resets(
    broker: EmbeddedBroker, reset: str, expected: list[int]
) -> None:
    broker.admin().create_topic(TopicSpec("s", 1))
    send(broker, "s", [(None, b"1"), (None, b"2"), (None, b"3")])
    tp = TopicPartition("s", 0)
    consumer = broker.consumer("g", auto_offset_reset=reset)  # type: ignore[arg-type]
    consumer.assign([tp])
    consumer.seek(tp, 100)
    assert [r.offset for r in consumer.poll(0.2)] == expected
    assert consumer.position(tp) == 3
    consumer.close()


def test_closing_the_broker_stops_a_background_pass_between_partitions(tmp_path: Path) -> None:
    armed, started, release = threading.Event(), threading.Event(), threading.Event()

    class Held(Clock):
        """Holds the background pass at its start once armed, and makes the records old."""

        def __call__(self) -> int:
            if threading.current_thread().name == "ferryman-embedded-cleaner" and armed.is_set():
                started.set()
                release.wait(30)
                return self.now + HOUR
            return self.now

    clock = Held()
    broker = EmbeddedBroker(tmp_path / "b.db", clock=clock, cleaner_interval=0.05)
    try:
        config = {"cleanup.policy": "compact", "min.compaction.lag.ms": "1000"}
        broker.admin().create_topic(TopicSpec("c", 200, config))
        producer = broker.producer()
        for p in range(200):
            producer.send("c", b"1", key=b"k", partition=p)
            producer.send("c", b"2", key=b"k", partition=p)
        producer.close(30)
        armed.set()
        assert started.wait(30), "the background cleaner never ran"
        stopping = threading.Thread(target=broker.close)
        stopping.start()
        wait_until(lambda: broker.closed, 30, "close() to begin")
        release.set()
        stopping.join(60)
        assert not stopping.is_alive()
    finally:
        release.set()
        broker.close()
    with closing(sqlite3.connect(tmp_path / "b.db")) as conn:
        untouched = conn.execute("SELECT count(*) FROM partitions WHERE clean_upto = 0").fetchone()
    assert untouched[0] > 0, "close() waited for the whole pass over 200 partitions"
