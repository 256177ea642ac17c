"""Cleaning: compaction in the manner of Kafka's LogCompactionTester, and retention.

The cleaner is triggered through ``Backend.clean`` and every check waits, with a deadline, for
its effect. On Kafka the trigger appends filler records (``FILLER_KEY``), which are ignored here.
"""

from __future__ import annotations

import random
import time

import pytest

from ferryman.records import Record, TopicPartition
from ferryman.testing.contract.backend import FILLER_KEY, Backend
from ferryman.testing.contract.helpers import consume_all, poll_together, produce_n
from ferryman.testing.waiting import wait_until

HOUR_MS = 3_600_000


def now_ms() -> int:
    return int(time.time() * 1000)


def data(records: list[Record]) -> list[Record]:
    return [r for r in records if r.key != FILLER_KEY]


def cleaned(backend: Backend, topic: str, done: object) -> list[Record]:
    """Trigger cleaning until ``done(records)`` holds for the topic's records; return them."""
    assert callable(done)
    last: list[Record] = []

    def attempt() -> bool:
        nonlocal last
        backend.clean(topic)
        last = data(backend.read_all(topic))
        # Kafka's cleaner may delete segments while the read is under way: the reader then
        # jumps from records since deleted to the new log start, and the read has a hole (CI
        # saw offsets 0-9 then 70-99). Such a read is no picture of the log: read again.
        start = {p: o.earliest for p, o in backend.admin.offsets(topic).items()}
        if any(r.offset < start[r.partition] for r in last):
            return False
        return bool(done(last))

    wait_until(
        attempt,
        backend.clean_timeout,
        lambda: f"{len(last)} records, offsets {backend.admin.offsets(topic)}",
        interval=0.5 if backend.is_kafka else 0.05,
    )
    return last


def count_keys(records: list[Record]) -> dict[bytes | None, int]:
    counts: dict[bytes | None, int] = {}
    for r in records:
        counts[r.key] = counts.get(r.key, 0) + 1
    return counts


@pytest.mark.parametrize("tombstones", ["kept", "removed"])
def test_log_compaction_keeps_the_last_write_of_every_key(
    backend: Backend, tombstones: str
) -> None:
    keys = [b"key-%04d" % i for i in range(300)]
    deleted = set(random.Random(7).sample(keys, len(keys) // 10))
    delete_retention = str(HOUR_MS) if tombstones == "kept" else "100"
    topic = backend.topic(
        2,
        {"cleanup.policy": "compact", "delete.retention.ms": delete_retention},
        cleanable=True,
    )

    # five versions of every key, in a shuffled order per round; 10% of keys end deleted
    writes: list[tuple[bytes, bytes | None]] = []
    rng = random.Random(11)
    for version in range(5):
        order = keys[:]
        rng.shuffle(order)
        for k in order:
            last = version == 4
            writes.append((k, None if last and k in deleted else b"%s=v%d" % (k, version)))
    producer = backend.producer()
    acks = produce_n(
        producer, topic, len(writes), key=lambda i: writes[i][0], value=lambda i: writes[i][1]
    )
    final = {k: (v, acks[i]) for i, (k, v) in enumerate(writes)}
    ends = {p: o.latest for p, o in backend.admin.offsets(topic).items()}

    def compacted(records: list[Record]) -> bool:
        counts = count_keys(records)
        if tombstones == "kept":
            return set(counts) == set(keys) and set(counts.values()) == {1}
        return set(counts) == set(keys) - deleted and set(counts.values()) == {1}

    records = cleaned(backend, topic, compacted)

    for r in records:
        assert r.key is not None
        value, ack = final[r.key]
        assert (r.value, r.partition, r.offset) == (value, ack.partition, ack.offset), (
            f"key {r.key!r}: found {r.value!r} at {r.partition}@{r.offset}, "
            f"last written {value!r} at {ack.partition}@{ack.offset}"
        )
    offsets = backend.admin.offsets(topic)
    assert all(offsets[p].latest >= end for p, end in ends.items()), "the log end moved back"
    if tombstones == "removed":
        return

    assert {r.key for r in records if r.value is None} == deleted
    # Tombstones must outlive later cleaning passes too, not only the first: rewrite some live
    # keys twice and wait until they are compacted again, which proves another pass ran.
    live = sorted(set(keys) - deleted)[:20]
    rewrites = [k for k in live for _ in range(2)]
    produce_n(
        producer, topic, len(rewrites), key=lambda i: rewrites[i], value=lambda i: b"again-%d" % i
    )

    def compacted_again(records: list[Record]) -> bool:
        counts = count_keys(records)
        rewritten = {r.key for r in records if r.value and r.value.startswith(b"again-")}
        return rewritten == set(live) and all(counts[k] == 1 for k in live)

    records = cleaned(backend, topic, compacted_again)
    assert {r.key for r in records if r.value is None} == deleted, "tombstones went too soon"


def test_min_compaction_lag_keeps_newer_records(backend: Backend) -> None:
    topic = backend.topic(
        1, {"cleanup.policy": "compact", "min.compaction.lag.ms": str(HOUR_MS)}, cleanable=True
    )
    producer = backend.producer()
    old = now_ms() - 2 * HOUR_MS
    # old versions of keys a0..a9, older than the lag: cleanable
    produce_n(
        producer,
        topic,
        30,
        key=lambda i: b"a%d" % (i % 10),
        value=lambda i: b"old-%d" % i,
        timestamp=lambda i: old + i,
    )
    # new versions of keys b0..b4, inside the lag: must stay, every one of them
    new = produce_n(
        producer, topic, 15, key=lambda i: b"b%d" % (i % 5), value=lambda i: b"new-%d" % i
    )

    def old_compacted(records: list[Record]) -> bool:
        return sum(1 for r in records if r.value and r.value.startswith(b"old-")) == 10

    records = cleaned(backend, topic, old_compacted)
    assert [r.offset for r in records if r.key and r.key.startswith(b"b")] == [
        a.offset for a in new
    ]
    assert sorted(r.value or b"" for r in records if r.key and r.key.startswith(b"a")) == sorted(
        b"old-%d" % i for i in range(20, 30)
    )


def test_retention_ms_advances_the_log_start(backend: Backend) -> None:
    topic = backend.topic(
        2, {"cleanup.policy": "delete", "retention.ms": str(HOUR_MS)}, cleanable=True
    )
    producer = backend.producer()
    old = now_ms() - 2 * HOUR_MS
    produce_n(producer, topic, 20, key=lambda i: b"k%d" % i, timestamp=lambda i: old + i)
    new = produce_n(producer, topic, 20, key=lambda i: b"k%d" % i, value=lambda i: b"new-%d" % i)
    first_new = {
        p: min(a.offset for a in new if a.partition == p) for p in {a.partition for a in new}
    }

    records = cleaned(
        backend,
        topic,
        lambda _: all(backend.admin.offsets(topic)[p].earliest >= o for p, o in first_new.items()),
    )
    assert {
        p: o.earliest for p, o in backend.admin.offsets(topic).items() if p in first_new
    } == first_new
    assert sorted((r.partition, r.offset) for r in records) == sorted(
        (a.partition, a.offset) for a in new
    )
    # a group without commits lags by what is left, not by what was ever written
    bounds = backend.admin.offsets(topic)
    assert backend.admin.group_lag(backend.group(), topic) == {
        TopicPartition(topic, p): o.latest - o.earliest for p, o in bounds.items()
    }


def test_retention_bytes_advances_the_log_start(backend: Backend) -> None:
    topic = backend.topic(
        1, {"cleanup.policy": "delete", "retention.bytes": "30000"}, cleanable=True
    )
    producer = backend.producer()
    base = now_ms() - HOUR_MS
    rng = random.Random(3)  # incompressible values: the size on disk is what retention counts
    # ten chunks of 10 x 1 KB, timestamps 2 minutes apart (so Kafka rolls a segment per chunk)
    for chunk in range(10):
        start = base + chunk * 120_000
        produce_n(
            producer,
            topic,
            10,
            value=lambda _: rng.randbytes(1000),
            timestamp=lambda i, start=start: start + i,  # type: ignore[misc]
        )

    # what stays is roughly retention.bytes worth (Kafka deletes whole segments, so allow more)
    records = cleaned(backend, topic, lambda rs: len(rs) <= 50)
    assert backend.admin.offsets(topic)[0].earliest > 0
    assert records, "retention.bytes deleted everything, even the newest records"
    # the newest records stay, with no hole
    assert [r.offset for r in records] == list(range(records[0].offset, 100))
    assert len(records) >= 10


@pytest.mark.parametrize(("reset", "expected"), [("earliest", "log start"), ("latest", "log end")])
def test_a_commit_below_the_log_start_resets(backend: Backend, reset: str, expected: str) -> None:
    topic = backend.topic(
        1, {"cleanup.policy": "delete", "retention.ms": str(HOUR_MS)}, cleanable=True
    )
    tp = TopicPartition(topic, 0)
    producer = backend.producer()
    old = now_ms() - 2 * HOUR_MS
    produce_n(producer, topic, 10, timestamp=lambda i: old + i)
    new = produce_n(producer, topic, 5, value=lambda i: b"new-%d" % i)
    group = backend.group()
    setter = backend.consumer(group)
    setter.subscribe([topic])
    # the old records may go at any moment (a background cleaner), so only own and commit
    poll_together([setter], lambda: setter.assignment() == {tp}, backend.join_timeout)
    setter.commit({tp: 3})
    setter.close()

    cleaned(backend, topic, lambda _: backend.admin.offsets(topic)[0].earliest == new[0].offset)

    consumer = backend.consumer(group, auto_offset_reset=reset)  # type: ignore[arg-type]
    consumer.subscribe([topic])
    if expected == "log start":
        first = consume_all(consumer, 1, backend.join_timeout)[0]
        assert (first.offset, first.value) == (new[0].offset, b"new-0")
    else:
        end = backend.admin.offsets(topic)[0].latest
        polled: list[Record] = []

        def at_end() -> bool:
            polled.extend(consumer.poll(0.1))
            return consumer.assignment() == {tp} and consumer.position(tp) == end

        wait_until(at_end, backend.join_timeout, lambda: (consumer.assignment(), polled))
        assert polled == []
