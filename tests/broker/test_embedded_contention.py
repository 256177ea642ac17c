"""Many OS processes writing one broker file at once: writers wait their turn, nothing is lost."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.waiting import eventually, wait_until

from ferryman.broker.base import Consumer
from ferryman.broker.embedded import EmbeddedBroker, storage
from ferryman.config import ServiceConfig
from ferryman.records import Record, TopicPartition, TopicSpec
from ferryman.service import Service
from ferryman.topics import EventTopic

PRODUCER = textwrap.dedent(
    """
    import sys
    from ferryman.broker.embedded import EmbeddedBroker

    path, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    broker = EmbeddedBroker(path, cleaner_interval=None)
    producer = broker.producer()
    futures = []
    for seq in range(count):
        key = f"{name}-{seq % 17}".encode()
        futures.append(producer.send("t", f"{name} {seq}".encode(), key=key))
        if seq % 50 == 49:  # many small transactions, interleaved with the other writers
            assert producer.flush(120) == 0
    assert producer.flush(120) == 0
    failed = [f.exception() for f in futures if f.exception() is not None]
    assert not failed, failed[:3]
    broker.close()
    print("done", flush=True)
    """
)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    b = EmbeddedBroker(tmp_path / "broker.db", cleaner_interval=None)
    b.admin().create_topic(TopicSpec("t", 3))
    yield b
    b.close()


def read_everything(broker: EmbeddedBroker, partitions: int) -> dict[int, list[bytes]]:
    admin = broker.admin()
    ends = {p: o.latest for p, o in admin.offsets("t").items()}
    consumer = broker.consumer(None)
    consumer.assign([TopicPartition("t", p) for p in range(partitions)])
    seen: dict[int, list[bytes]] = defaultdict(list)
    while any(consumer.position(TopicPartition("t", p)) < ends[p] for p in range(partitions)):
        for record in consumer.poll(10):
            assert record.value is not None
            seen[record.partition].append(record.value)
    consumer.close()
    return seen


def test_concurrent_producer_processes_lose_and_duplicate_nothing(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    writers, count = 4, 1500
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PRODUCER, str(tmp_path / "broker.db"), f"w{i}", str(count)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(writers)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert out.split() == [b"done"]

    seen = read_everything(broker, 3)
    everything = [v for values in seen.values() for v in values]
    assert len(everything) == writers * count
    assert len(set(everything)) == writers * count
    # each writer's records keep their send order within a partition
    for values in seen.values():
        last: dict[bytes, int] = {}
        for value in values:
            name, seq = value.split()
            assert int(seq) > last.get(name, -1)
            last[name] = int(seq)


HOLDER = textwrap.dedent(
    """
    import sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    print("holding", flush=True)
    sys.stdin.readline()
    conn.execute("COMMIT")
    print("released", flush=True)
    """
)


def test_a_writer_waits_for_another_process_holding_the_write_lock(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "broker.db")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    ) as holder:
        assert holder.stdout is not None
        assert holder.stdin is not None
        try:
            assert holder.stdout.readline() == b"holding\n"
            producer = broker.producer()
            future = producer.send("t", b"patient", partition=1)
            # while the other process holds the lock the record cannot be acknowledged, and
            # the producer waits rather than failing it
            assert producer.flush(0.3) == 1
            assert not future.done()
            holder.stdin.write(b"go\n")
            holder.stdin.flush()
            assert holder.stdout.readline() == b"released\n"
            assert future.result(60).offset == 0
        finally:
            holder.kill()


def hold_the_lock(path: Path) -> subprocess.Popen[bytes]:
    """Another process holding the write lock (as one stopped mid-transaction would); write
    a line to its stdin to release it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert holder.stdout is not None
    assert holder.stdout.readline() == b"holding\n"
    return holder


def release(holder: subprocess.Popen[bytes]) -> None:
    assert holder.stdin is not None
    assert holder.stdout is not None
    holder.stdin.write(b"go\n")
    holder.stdin.flush()
    assert holder.stdout.readline() == b"released\n"
    holder.wait(30)
    holder.stdin.close()
    holder.stdout.close()


def lock_warnings(caplog: pytest.LogCaptureFixture) -> int:
    return sum("locked by another writer" in r.getMessage() for r in caplog.records)


def test_commits_and_records_wait_out_a_lock_held_past_the_busy_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # a lock held longer than BUSY_TIMEOUT used to fail commits with StorageError, and the
    # service with them; they wait now, with a warning each BUSY_TIMEOUT
    monkeypatch.setattr(storage, "BUSY_TIMEOUT", 0.3)
    caplog.set_level(logging.WARNING, "ferryman.broker.embedded")
    path = tmp_path / "broker.db"
    broker = EmbeddedBroker(path, cleaner_interval=None)
    try:
        broker.admin().create_topic(TopicSpec("t", 1))
        tp = TopicPartition("t", 0)
        producer = broker.producer()
        producer.send("t", b"before").result(10)
        consumer = broker.consumer("g")
        consumer.subscribe(["t"])
        got: list[bytes | None] = []

        def poll_until(count: int) -> bool:
            got.extend(r.value for r in consumer.poll(0.1))
            return len(got) >= count

        wait_until(lambda: poll_until(1), 30, "the first record")
        with hold_the_lock(path) as holder:
            failures: list[BaseException] = []

            def commit() -> None:
                try:
                    consumer.commit({tp: 1})
                except BaseException as exc:
                    failures.append(exc)

            committer = threading.Thread(target=commit)
            committer.start()
            during = producer.send("t", b"during the lock")
            wait_until(lambda: failures or lock_warnings(caplog) >= 4, 60, "lock warnings")
            assert not failures
            assert committer.is_alive()
            assert not during.done()
            release(holder)
        committer.join(30)
        assert not failures
        assert broker.admin().committed("g") == {tp: 1}
        assert during.result(30).offset == 1
        wait_until(lambda: poll_until(2), 30, "the record produced during the lock")
        assert got == [b"before", b"during the lock"]
        assert str(path) in caplog.records[0].getMessage()
    finally:
        broker.close()


def test_a_lock_longer_than_a_session_does_not_make_members_expire_each_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # nobody could beat during the lock: the first heartbeat after it used to declare every
    # other member dead, and their commits then failed
    monkeypatch.setattr(storage, "BUSY_TIMEOUT", 0.3)
    caplog.set_level(logging.WARNING, "ferryman.broker.embedded")
    path = tmp_path / "broker.db"
    session = {"session.timeout.ms": "1000", "heartbeat.interval.ms": "100"}
    broker = EmbeddedBroker(path, cleaner_interval=None)
    try:
        broker.admin().create_topic(TopicSpec("t", 2))
        members = [broker.consumer("g", config=session) for _ in range(2)]
        for m in members:
            m.subscribe(["t"])
        wait_until(
            lambda: [len(m.assignment()) for m in members if not m.poll(0.05)] == [1, 1],
            30,
            "the two members to split the partitions",
        )

        def generation() -> int:
            with contextlib.closing(sqlite3.connect(path)) as conn:
                return int(conn.execute("SELECT generation FROM groups").fetchone()[0])

        before = generation()
        failures: list[BaseException] = []

        def commit(member: Consumer) -> None:
            try:
                member.commit(dict.fromkeys(member.assignment(), 0))
            except BaseException as exc:
                failures.append(exc)

        with hold_the_lock(path) as holder:
            committers = [threading.Thread(target=commit, args=(m,)) for m in members]
            for t in committers:
                t.start()
            # each warning is one BUSY_TIMEOUT of waiting: twelve of them outlast the session
            wait_until(lambda: lock_warnings(caplog) >= 12, 60, "lock warnings")
            release(holder)
            released = time.monotonic()
        for t in committers:
            t.join(30)
        assert not failures
        # let three sessions pass with every member beating: nobody is expired
        wait_until(lambda: time.monotonic() > released + 3, 10, "three sessions to pass")
        assert generation() == before
        assert broker.admin().committed("g") == {TopicPartition("t", p): 0 for p in range(2)}
    finally:
        broker.close()


@dataclass
class Tick:
    seq: int


@pytest.mark.slow
def test_a_service_survives_a_two_minute_lock_and_then_handles_new_records(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "ferryman.broker.embedded")
    path = tmp_path / "broker.db"
    ticks = EventTopic("ticks", Tick, partitions=1)
    service = Service(
        "survivor",
        broker=f"embedded:{path}",
        registry=f"embedded:{tmp_path / 'registry.db'}",
        config=ServiceConfig(commit_interval=0.05),
    )
    handled: list[int] = []
    entered, go = threading.Event(), threading.Event()

    @service.on(ticks)
    def tick(t: Tick) -> None:
        if t.seq == 1:
            entered.set()
            go.wait(30)
        handled.append(t.seq)

    def committed() -> dict[TopicPartition, int]:
        reader = EmbeddedBroker(path, cleaner_interval=None)
        try:
            return reader.admin().committed("survivor")
        finally:
            reader.close()

    async def main() -> None:
        async with service:
            await service.emit(ticks, Tick(1))
            await eventually(entered.is_set, 30, "the first record to be handled")
            with hold_the_lock(path) as holder:
                locked_at = time.monotonic()
                # its offset must now wait in memory for the lock, and a new record with it
                go.set()
                second = asyncio.ensure_future(service.emit(ticks, Tick(2)))
                await eventually(
                    lambda: time.monotonic() - locked_at > 120 and lock_warnings(caplog) >= 4,
                    200,
                    "120 s under the lock",
                )
                assert not second.done()
                release(holder)
            await second
            await eventually(lambda: handled == [1, 2], 60, f"handled {handled}")
            await eventually(
                lambda: committed() == {TopicPartition("ticks", 0): 2}, 60, "offset 2 committed"
            )

    asyncio.run(main())


def test_readers_are_not_blocked_by_a_writer(broker: EmbeddedBroker, tmp_path: Path) -> None:
    broker.producer().send("t", b"visible", partition=0).result(10)
    conn = sqlite3.connect(tmp_path / "broker.db", isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        consumer = broker.consumer(None)
        consumer.assign([TopicPartition("t", 0)])
        assert [r.value for r in consumer.poll(10)] == [b"visible"]
        assert broker.admin().offsets("t")[0].latest == 1
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def test_a_writer_killed_while_holding_the_write_lock_holds_nobody_up(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "broker.db")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    ) as holder:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"holding\n"
        producer = broker.producer()
        future = producer.send("t", b"after the crash", partition=1)
        holder.kill()  # SIGKILL in the middle of its transaction
        assert future.result(60).offset == 0
    assert broker.admin().offsets("t")[1].latest == 1


KEYED_PRODUCER = textwrap.dedent(
    """
    import sys
    from ferryman.broker.embedded import EmbeddedBroker

    path, count = sys.argv[1], int(sys.argv[2])
    broker = EmbeddedBroker(path, cleaner_interval=None)
    producer = broker.producer()
    for seq in range(count):
        key = b"k%d" % (seq % 40)
        # the last write of every fifth key is a tombstone
        last = seq >= count - 40
        value = None if last and seq % 5 == 0 else b"%d" % seq
        producer.send("c", value, key=key, partition=0)
        if seq % 200 == 199:
            assert producer.flush(120) == 0
    assert producer.flush(120) == 0
    broker.close()
    print("done", flush=True)
    """
)

CLEANER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from ferryman.broker.embedded import EmbeddedBroker

    broker = EmbeddedBroker(sys.argv[1], cleaner_interval=None)
    passes = 0
    while not Path(sys.argv[2]).exists() or passes < 3:
        broker.clean()
        passes += 1
    broker.close()
    print(passes, flush=True)
    """
)


def test_cleaner_producer_and_reader_in_three_processes_keep_every_last_write(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    count = 12_000
    broker.admin().create_topic(
        TopicSpec("c", 1, {"cleanup.policy": "compact", "delete.retention.ms": "3600000"})
    )
    stop = tmp_path / "stop"
    path = str(tmp_path / "broker.db")
    cleaner = subprocess.Popen(
        [sys.executable, "-c", CLEANER, path, str(stop)], stdout=subprocess.PIPE, text=True
    )
    producer = subprocess.Popen(
        [sys.executable, "-c", KEYED_PRODUCER, path, str(count)], stdout=subprocess.PIPE, text=True
    )
    expected = {b"k%d" % (s % 40): s for s in range(count - 40, count)}
    tp = TopicPartition("c", 0)
    reader = broker.consumer(None)
    reader.assign([tp])
    seen: dict[bytes, int | None] = {}
    last_offset = -1
    try:
        while (
            producer.poll() is None or reader.position(tp) < broker.admin().offsets("c")[0].latest
        ):
            for r in reader.poll(1):
                assert r.offset > last_offset
                last_offset = r.offset
                assert r.key is not None
                seq = None if r.value is None else int(r.value)
                # a record read is the one written at its place: never an older version
                assert seq is None or seq % 40 == int(r.key[1:])
                assert seq is None or seq >= (seen.get(r.key) or -1)
                seen[r.key] = seq
        assert producer.communicate(timeout=120)[0].split() == ["done"]
    finally:
        stop.touch()
        assert int(cleaner.communicate(timeout=120)[0]) >= 3
        reader.close()
    final = {k: (None if s % 5 == 0 else s) for k, s in expected.items()}
    assert seen == final, "the reader missed a key's last write"
    after = {
        r.key: (None if r.value is None else int(r.value)) for r in read_compacted(broker, "c")
    }
    assert after == final, "a key's last write was cleaned away"


def read_compacted(broker: EmbeddedBroker, topic: str) -> list[Record]:
    tp = TopicPartition(topic, 0)
    end = broker.admin().offsets(topic)[0].latest
    consumer = broker.consumer(None)
    consumer.assign([tp])
    out: list[Record] = []
    while consumer.position(tp) < end:
        out += consumer.poll(10)
    consumer.close()
    return out
