"""Producing to the embedded broker: acknowledgements as real futures, batching, records intact."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any

import pytest

from ferryman.broker.embedded import EmbeddedBroker
from ferryman.broker.embedded import producer as producer_module
from ferryman.broker.embedded import storage as storage_module
from ferryman.broker.partitioner import partition_for
from ferryman.errors import BrokerError, ClientClosed, ConfigError, ProduceError, StorageError
from ferryman.records import Record, RecordMetadata, TopicPartition, TopicSpec


def read(broker: EmbeddedBroker, partition: int, start: int = 0, topic: str = "t") -> list[Record]:
    tp = TopicPartition(topic, partition)
    end = broker.admin().offsets(topic)[partition].latest
    consumer = broker.consumer(None)
    consumer.assign([tp])
    consumer.seek(tp, start)
    out: list[Record] = []
    while consumer.position(tp) < end:
        out += consumer.poll(10, max_records=333)
    consumer.close()
    return out


def test_acknowledgements_work_with_every_way_of_waiting(broker: EmbeddedBroker) -> None:
    producer = broker.producer()
    called: list[RecordMetadata] = []
    futures = [producer.send("t", b"%d" % i, partition=1) for i in range(300)]
    futures[5].add_done_callback(lambda f: called.append(f.result()))

    done, not_done = concurrent.futures.wait(futures, timeout=30)
    assert not not_done
    assert len(done) == 300
    assert sorted(f.result().offset for f in concurrent.futures.as_completed(futures)) == list(
        range(300)
    )
    assert called == [futures[5].result()]
    assert futures[5].result() == RecordMetadata("t", 1, 5, futures[5].result().timestamp)

    async def wait_async() -> RecordMetadata:
        return await asyncio.wrap_future(producer.send("t", b"async", partition=1))

    assert asyncio.run(wait_async()).offset == 300
    late: list[int] = []
    futures[0].add_done_callback(lambda f: late.append(f.result().offset))
    assert late == [0]  # a callback added after the fact runs at once


def test_a_queued_record_cannot_be_cancelled(broker: EmbeddedBroker) -> None:
    producer = broker.producer()
    future = producer.send("t", b"v", partition=0)
    assert not future.cancel()
    assert future.result(10).offset == 0


def test_threads_waiting_on_records_of_one_batch(broker: EmbeddedBroker) -> None:
    producer = broker.producer({"linger.ms": "50"})
    futures = [producer.send("t", b"x", partition=2) for _ in range(50)]
    results: list[int] = []
    lock = threading.Lock()

    def wait_for(i: int) -> None:
        offset = futures[i].result(30).offset
        with lock:
            results.append(offset)

    threads = [threading.Thread(target=wait_for, args=(i,)) for i in range(0, 50, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == list(range(0, 50, 5))


def test_many_threads_sending_at_once(broker: EmbeddedBroker) -> None:
    producer = broker.producer({"queue.buffering.max.messages": "64"})
    acks: list[RecordMetadata] = []
    lock = threading.Lock()

    def run(name: int) -> None:
        futures = [producer.send("t", b"%d-%d" % (name, i), key=b"k%d" % name) for i in range(500)]
        mine = [f.result(60) for f in futures]
        with lock:
            acks.extend(mine)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(acks) == 3000
    assert len({(a.partition, a.offset) for a in acks}) == 3000
    for partition in range(4):
        values = [r.value for r in read(broker, partition)]
        for name in range(6):
            mine = [v for v in values if v is not None and v.startswith(b"%d-" % name)]
            assert mine == sorted(mine, key=lambda v: int(v.split(b"-")[1]))


def test_keyed_records_follow_murmur2_and_unkeyed_ones_spread(broker: EmbeddedBroker) -> None:
    producer = broker.producer()
    for i in range(40):
        key = b"customer-%d" % i
        assert producer.send("t", b"v", key=key).result(10).partition == partition_for(key, 4)
    used = {producer.send("t", b"v").result(10).partition for _ in range(8)}
    assert used == {0, 1, 2, 3}  # the sticky partition moves on after every batch


def test_records_come_back_exactly(broker: EmbeddedBroker) -> None:
    producer = broker.producer()
    sent = [
        (None, None, ()),
        (None, b"", ()),
        (b"", b"x", (("", b""),)),
        (b"k", b"\x00" * 10, (("a", b"\x00\xff"), ("a", b"again"), ("ünï", b"\x80"))),
    ]
    for key, value, headers in sent:
        producer.send("t", value, key=key, headers=headers, partition=3, timestamp=1234)
    producer.flush(10)
    got = [(r.key, r.value, r.headers, r.timestamp, r.offset) for r in read(broker, 3)]
    assert got == [(k, v, h, 1234, i) for i, (k, v, h) in enumerate(sent)]


def test_large_batches_and_records_span_rows_and_read_from_any_offset(
    broker: EmbeddedBroker,
) -> None:
    broker.admin().create_topic(TopicSpec("big", 1, {"max.message.bytes": str(4 << 20)}))
    producer = broker.producer()
    big = bytes(range(256)) * 8192  # 2 MiB: larger than one row's byte budget
    for i in range(2500):
        producer.send("big", b"%d" % i, partition=0)
    producer.send("big", big, partition=0)
    producer.send("big", b"after", partition=0)
    assert producer.flush(60) == 0
    records = read(broker, 0, topic="big")
    assert [r.offset for r in records] == list(range(2502))
    assert records[2500].value == big
    assert [r.value for r in read(broker, 0, start=1499, topic="big")][:2] == [b"1499", b"1500"]


def test_close_flushes_and_then_refuses(broker: EmbeddedBroker) -> None:
    producer = broker.producer({"linger.ms": "20"})
    future = producer.send("t", b"last words", partition=0)
    producer.close()
    assert future.done()
    with pytest.raises(ClientClosed):
        producer.send("t", b"too late")


@pytest.mark.parametrize(
    "config",
    [
        {"linger.ms": "soon"},
        {"linger.ms": "-5"},
        {"queue.buffering.max.messages": "0"},
        {"queue.buffering.max.messages": "many"},
    ],
)
def test_bad_producer_config(broker: EmbeddedBroker, config: dict[str, str]) -> None:
    name = next(iter(config))
    with pytest.raises(ConfigError, match=name.replace(".", r"\.")):
        broker.producer(config)


def test_wrong_types_are_refused_in_the_callers_thread(broker: EmbeddedBroker) -> None:
    producer = broker.producer()
    good = producer.send("t", b"fine", partition=0)
    with pytest.raises(TypeError, match="encode it first"):
        producer.send("t", "text", partition=0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="record key"):
        producer.send("t", b"v", key=42, partition=0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="whole milliseconds"):
        producer.send("t", b"v", partition=0, timestamp=1.5)  # type: ignore[arg-type]
    views = producer.send("t", bytearray(b"ba"), key=memoryview(b"mv"), partition=0)  # type: ignore[arg-type]
    assert good.result(10).offset == 0
    assert views.result(10).offset == 1
    assert [(r.key, r.value) for r in read(broker, 0)] == [(None, b"fine"), (b"mv", b"ba")]


def test_values_that_cannot_be_stored_are_refused_and_the_writer_keeps_going(
    broker: EmbeddedBroker,
) -> None:
    producer = broker.producer()
    with pytest.raises(ValueError, match="timestamp"):
        producer.send("t", b"v", partition=0, timestamp=1 << 63)
    with pytest.raises(TypeError, match="header"):
        producer.send("t", b"v", partition=0, headers=(("n", 5),))  # type: ignore[arg-type]
    assert producer.send("t", b"after", partition=0).result(10).offset == 0
    assert [r.value for r in read(broker, 0)] == [b"after"]


def test_a_header_name_too_long_to_store_is_refused_clearly(broker: EmbeddedBroker) -> None:
    # its length is stored in two bytes: 70,000 characters used to fail with a raw struct.error
    producer = broker.producer()
    with pytest.raises(ValueError, match=r"70000 bytes long.*up to 65535"):
        producer.send("t", b"v", partition=0, headers=(("n" * 70_000, b"x"),))
    longest = "é" * (65_535 // 2)
    assert producer.send("t", b"v", partition=0, headers=((longest, b"x"),)).result(10).offset == 0
    assert read(broker, 0)[0].headers == ((longest, b"x"),)


def test_a_failing_writer_fails_its_records_instead_of_leaving_them_pending(
    broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    producer = broker.producer()
    producer.send("t", b"ok", partition=0).result(10)
    # an error the writer does not expect (as a bug in it would raise) must not hang its sender
    real_write = storage_module.write
    failed: list[bool] = []

    def buggy_once(conn: Any, path: Any, body: Any, **kw: Any) -> Any:
        if not failed:
            failed.append(True)
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        return real_write(conn, path, body, **kw)

    monkeypatch.setattr(producer_module, "write", buggy_once)
    doomed = producer.send("t", b"same batch", partition=0)
    with pytest.raises(ProduceError, match="too large"):
        doomed.result(30)
    assert producer.send("t", b"next batch", partition=0).result(30).offset == 1


def test_records_queued_behind_a_failed_write_fail_too(
    broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a full disk fails a large batch; a smaller one queued behind it would fit, and would be
    # acknowledged after a hole in what the sender sent
    writing, disk_full = threading.Event(), threading.Event()
    real_write = storage_module.write  # what the producer module calls by that name

    def failing_once(conn: Any, path: Any, body: Any, **kw: Any) -> Any:
        if not disk_full.is_set():
            writing.set()
            assert disk_full.wait(30)
            raise StorageError("database or disk is full")
        return real_write(conn, path, body, **kw)

    monkeypatch.setattr(producer_module, "write", failing_once)
    producer = broker.producer()
    large = producer.send("t", bytes(500_000), partition=0)
    assert writing.wait(30)
    small = producer.send("t", b"small", partition=0)
    elsewhere = producer.send("t", b"elsewhere", partition=1)
    disk_full.set()
    with pytest.raises(ProduceError, match="disk is full"):
        large.result(30)
    with pytest.raises(ProduceError, match="earlier record to the same partition"):
        small.result(30)
    assert elsewhere.result(30).offset == 0  # other partitions keep going
    # records sent once the failure is known go through, in order
    assert producer.send("t", b"resent", partition=0).result(30).offset == 0
    assert [r.value for r in read(broker, 0)] == [b"resent"]


def test_flush_or_close_inside_an_acknowledgement_callback_is_refused(
    broker: EmbeddedBroker,
) -> None:
    # callbacks run in the writer's thread: waiting there for the writer would wait forever
    producer = broker.producer()
    refused: list[BaseException] = []

    def callback(_: object) -> None:
        for call in (lambda: producer.flush(5), producer.close):
            try:
                call()
            except BrokerError as exc:
                refused.append(exc)

    producer.send("t", b"v", partition=0).add_done_callback(callback)
    assert producer.send("t", b"w", partition=0).result(30).offset == 1
    assert len(refused) == 2, refused
    assert "callback" in str(refused[0])
