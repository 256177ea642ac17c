"""Failures: retries with back-off, then <topic>.dlq with headers; undecodable at once; stop."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from tests.waiting import eventually

from ferryman.broker import open_broker
from ferryman.broker.base import Broker
from ferryman.broker.embedded import EmbeddedBroker
from ferryman.errors import DecodeError, HandlerError
from ferryman.records import Record, TopicPartition
from ferryman.runtime.decoding import UndecodableLog
from ferryman.runtime.headers import MESSAGE_ID
from ferryman.runtime.message import Message
from ferryman.topics import DAY_MS, EventTopic

from .conftest import Env, read, run


@dataclass
class Job:
    n: int


@pytest.fixture
def broker(env: Env) -> Iterator[Broker]:
    b = open_broker(env.broker)
    yield b
    b.close()


def headers(record: Record) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers}


def test_failing_handler_retries_then_dead_letters_and_goes_on(env: Env, broker: Broker) -> None:
    jobs = EventTopic(env.name("jobs"), Job, partitions=1)
    handled: list[int] = []
    attempts: dict[int, int] = {}

    async def main() -> None:
        svc = env.service("worker", retries=2)

        @svc.on(jobs)
        async def work(job: Job) -> None:
            attempts[job.n] = attempts.get(job.n, 0) + 1
            if job.n == 3:
                raise ValueError(f"job {job.n} is cursed")
            handled.append(job.n)

        async with svc:
            for n in range(6):
                await svc.emit(jobs, Job(n))
            await eventually(lambda: len(handled) == 5, env.timeout, lambda: handled)
            assert svc.stats["dead_lettered"] == 1

    run(main())
    assert handled == [0, 1, 2, 4, 5]
    assert attempts[3] == 3
    [dead] = read(broker, jobs.name + ".dlq", 1, env.timeout)
    h = headers(dead)
    assert h["ferryman.dlq.topic"] == jobs.name
    assert (h["ferryman.dlq.partition"], h["ferryman.dlq.offset"]) == ("0", "3")
    assert h["ferryman.dlq.group"] == env.name("worker")
    assert h["ferryman.dlq.exception-type"] == "ValueError"
    assert h["ferryman.dlq.exception-message"] == "job 3 is cursed"
    assert "raise ValueError" in h["ferryman.dlq.traceback"]
    assert h["ferryman.dlq.attempts"] == "3"
    assert MESSAGE_ID in h, "the original headers are kept"
    [original] = [r for r in read(broker, jobs.name, 6, env.timeout) if r.offset == 3]
    assert (dead.key, dead.value) == (original.key, original.value)
    assert h["ferryman.dlq.original-timestamp"] == str(original.timestamp)


def test_a_transient_failure_is_retried_not_dead_lettered(env: Env) -> None:
    jobs = EventTopic(env.name("jobs"), Job, partitions=1)
    calls: list[int] = []

    async def main() -> None:
        svc = env.service("flaky", retries=3)

        @svc.on(jobs, batch=10)
        def work(batch: list[Job]) -> None:
            calls.append(len(batch))
            if len(calls) < 3:
                raise ConnectionError("database blinked")

        async with svc:
            await svc.emit(jobs, Job(1))
            await eventually(lambda: len(calls) == 3, env.timeout, lambda: calls)
            await eventually(lambda: svc.stats["handled"] == 1, env.timeout, lambda: svc.stats)
            assert svc.stats["dead_lettered"] == 0

    run(main())


def test_an_undecodable_record_goes_to_the_dlq_at_once(env: Env, broker: Broker) -> None:
    jobs = EventTopic(env.name("jobs"), Job, partitions=1)
    handled: list[int] = []

    async def main() -> None:
        svc = env.service("decoder", retries=5)

        @svc.on(jobs)
        async def work(job: Job) -> None:
            handled.append(job.n)

        async with svc:
            producer = broker.producer()
            producer.send(
                jobs.name, b"\x00\x00\x00\x00\x63not avro", headers=(("x", b"1"),)
            ).result()
            producer.close()
            await svc.emit(jobs, Job(7))
            await eventually(lambda: handled == [7], env.timeout, lambda: handled)

    run(main())
    [dead] = read(broker, jobs.name + ".dlq", 1, env.timeout)
    h = headers(dead)
    assert h["ferryman.dlq.exception-type"] == "ferryman.DecodeError"
    assert h["ferryman.dlq.attempts"] == "0"
    assert h["ferryman.dlq.offset"] == "0"
    assert h["x"] == "1"
    assert dead.value == b"\x00\x00\x00\x00\x63not avro"


def test_on_error_stop_stops_the_service_and_leaves_the_record_uncommitted(
    env: Env, broker: Broker
) -> None:
    jobs = EventTopic(env.name("jobs"), Job, partitions=1)
    handled: list[int] = []

    async def main() -> None:
        svc = env.service("strict", retries=1, on_error="stop")

        @svc.on(jobs)
        async def work(job: Job) -> None:
            if job.n == 1:
                raise RuntimeError("cannot handle 1")
            handled.append(job.n)

        await svc.start()
        for n in range(3):
            await svc.emit(jobs, Job(n))
        with pytest.raises(HandlerError, match="cannot handle 1") as info:
            await svc.wait()
        assert "on_error='dead-letter'" in str(info.value)
        await svc.stop()

    run(main())
    assert handled == [0]
    admin = broker.admin()
    try:
        committed = admin.committed(env.name("strict"), jobs.name)
        assert committed == {TopicPartition(jobs.name, 0): 1}
        assert admin.offsets(jobs.name + ".dlq")[0].latest == 0
    finally:
        admin.close()


def test_an_undecodable_key_goes_to_the_dlq_when_the_handler_reads_keys(
    env: Env, broker: Broker
) -> None:
    from ferryman.topics import EntityTopic

    @dataclass
    class Item:
        id: int

    items = EntityTopic(env.name("items"), Item, partitions=1)
    keys: list[int] = []

    async def main() -> None:
        svc = env.service("keyed")

        @svc.on(items)
        async def keep(item: Item | None, msg: Message[Item]) -> None:
            keys.append(msg.key)

        async with svc:
            good = await svc.publish(items, Item(1))
            producer = broker.producer()
            bad_value = read(broker, items.name, 1, env.timeout)[0].value
            producer.send(items.name, bad_value, key=b"\xffgarbage", partition=0).result()
            producer.close()
            await svc.publish(items, Item(2))
            await eventually(lambda: keys == [1, 2], env.timeout, lambda: keys)
            assert good.offset == 0

    run(main())
    [dead] = read(broker, items.name + ".dlq", 1, env.timeout)
    assert headers(dead)["ferryman.dlq.exception-type"] == "ferryman.DecodeError"
    assert dead.key == b"\xffgarbage"


def test_a_failing_batch_is_dead_lettered_whole_and_the_rest_committed(
    env: Env, broker: Broker
) -> None:
    jobs = EventTopic(env.name("jobs"), Job, partitions=1)
    handled: list[int] = []
    failed_batches: list[list[int]] = []

    async def main() -> None:
        svc = env.service("batcher", retries=1)

        @svc.on(jobs, batch=3)
        def work(batch: list[Job]) -> None:
            ns = [job.n for job in batch]
            if 4 in ns:
                failed_batches.append(ns)
                raise LookupError(f"batch {ns} holds job 4")
            handled.extend(ns)

        async with svc:
            for n in range(8):
                await svc.emit(jobs, Job(n))
            await eventually(
                lambda: len(handled) + svc.stats["dead_lettered"] == 8,
                env.timeout,
                lambda: (handled, svc.stats),
            )

    run(main())
    [first, retry] = failed_batches
    assert first == retry, "the batch is retried whole"
    assert sorted(handled + first) == list(range(8)), "every job handled or dead-lettered"
    assert handled == sorted(handled), "in order"
    dead = read(broker, jobs.name + ".dlq", len(first), env.timeout)
    assert [int(headers(d)["ferryman.dlq.offset"]) for d in dead] == first
    assert {headers(d)["ferryman.dlq.attempts"] for d in dead} == {"2"}
    admin = broker.admin()
    try:
        committed = admin.committed(env.name("batcher"), jobs.name)
        assert committed == {TopicPartition(jobs.name, 0): 8}
    finally:
        admin.close()


def test_dlq_headers_carry_a_message_that_is_not_valid_utf8(env: Env, broker: Broker) -> None:
    jobs = EventTopic(env.name("jobs"), Job, partitions=1)
    handled: list[int] = []
    # A file name read with surrogateescape: str() has a lone surrogate, which strict UTF-8 refuses.
    name = b"report-\xff.csv".decode(errors="surrogateescape")

    async def main() -> None:
        svc = env.service("reporter", retries=0)

        @svc.on(jobs)
        async def work(job: Job) -> None:
            if job.n == 0:
                raise FileNotFoundError(f"no such file: {name}")
            handled.append(job.n)

        async with svc:
            await svc.emit(jobs, Job(0))
            await svc.emit(jobs, Job(1))
            await eventually(lambda: handled == [1], env.timeout, lambda: (handled, svc.failure))

    run(main())
    [dead] = read(broker, jobs.name + ".dlq", 1, env.timeout)
    raw = dict(dead.headers)
    assert raw["ferryman.dlq.exception-message"] == b"no such file: report-\\udcff.csv"
    assert raw["ferryman.dlq.exception-type"] == b"FileNotFoundError"
    assert b"no such file: report-\\udcff.csv" in raw["ferryman.dlq.traceback"]


def test_a_dead_letter_of_an_old_record_outlives_the_next_retention_pass(
    env: Env, broker: Broker
) -> None:
    """Retention goes by timestamp: a dead letter stamped with its 20-day-old original's time
    would be deleted by the DLQ's 14-day retention at the next pass."""
    jobs = EventTopic(env.name("jobs"), Job, partitions=1, config={"retention.ms": 30 * DAY_MS})
    old = int(time.time() * 1000) - 20 * DAY_MS

    async def main() -> None:
        svc = env.service("worker", retries=0)

        @svc.on(jobs)
        async def work(job: Job) -> None:
            raise ValueError("cursed")

        async with svc:
            await svc.emit(jobs, Job(1), timestamp=old)
            await eventually(
                lambda: svc.stats["dead_lettered"] == 1, env.timeout, lambda: svc.stats
            )

    before = int(time.time() * 1000)
    run(main())
    if isinstance(broker, EmbeddedBroker):
        broker.clean()  # a retention pass, now
    [dead] = read(broker, jobs.name + ".dlq", 1, env.timeout)
    assert dead.timestamp >= before, "stamped when it was dead-lettered"
    assert headers(dead)["ferryman.dlq.original-timestamp"] == str(old)


def test_undecodable_records_are_logged_once_per_partition_and_interval(
    env: Env, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    jobs = EventTopic(env.name("jobs"), Job, partitions=1)
    handled: list[int] = []

    async def main() -> None:
        svc = env.service("decoder")

        @svc.on(jobs)
        async def work(job: Job) -> None:
            handled.append(job.n)

        async with svc:
            producer = broker.producer()
            for _ in range(3):
                producer.send(jobs.name, b"\x00\x00\x00\x00\x63not avro").result()
            producer.close()
            await svc.emit(jobs, Job(7))
            await eventually(lambda: handled == [7], env.timeout, lambda: handled)
            assert svc.stats["dead_lettered"] == 3

    with caplog.at_level(logging.WARNING, logger="ferryman.runtime"):
        run(main())
    lines = [r.getMessage() for r in caplog.records if "undecodable" in r.getMessage()]
    assert len(lines) == 1, lines
    assert f"undecodable record {jobs.name}[0]@0 sent to {jobs.name}.dlq: " in lines[0]
    assert "cannot decode" in lines[0], "the reason"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_undecodable_warning_counts_what_it_suppressed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    warn = UndecodableLog(logging.getLogger("ferryman.test"), 60.0, clock)
    bad = DecodeError("bad magic byte")

    def record(partition: int, offset: int) -> Record:
        return Record("t", partition, offset, None, b"x", (), 0)

    with caplog.at_level(logging.WARNING, logger="ferryman.test"):
        warn.warn(record(0, 0), bad, "t.dlq")
        warn.warn(record(0, 1), bad, "t.dlq")
        warn.warn(record(0, 2), bad, "t.dlq")
        warn.warn(record(1, 0), bad, "t.dlq")  # another partition has its own allowance
        clock.now += 61
        warn.warn(record(0, 3), bad, "t.dlq")
    assert [r.getMessage() for r in caplog.records] == [
        "undecodable record t[0]@0 sent to t.dlq: bad magic byte",
        "undecodable record t[1]@0 sent to t.dlq: bad magic byte",
        "undecodable record t[0]@3 sent to t.dlq: bad magic byte (2 more undecodable record(s) "
        "of this partition dead-lettered in the last 60s without a warning)",
    ]
