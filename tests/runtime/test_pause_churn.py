"""Under pause/resume churn a Service neither loses nor doubles a record, on every backend.

A slow handler on many small partitions, with bounds of a few records, makes the poll thread
pause, resume, wait for room and pause stalled partitions all the time. This is about
correctness, not speed: every record is handled exactly once, in order within its partition,
and the group's committed offsets end at the end of every partition.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from tests.waiting import eventually

from ferryman.records import TopicPartition
from ferryman.runtime import consumer as consumer_loop
from ferryman.topics import EventTopic

from .conftest import Env, run

PARTITIONS = 8
RECORDS = 600
KEYS = 64


@dataclass
class Job:
    n: int
    partition_key: str


@pytest.mark.parametrize("batch", [None, 3], ids=["one-at-a-time", "batch-3"])
def test_pause_resume_churn_loses_and_doubles_nothing(
    env: Env, batch: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A partition is paused after 50 ms without progress (1 s by default), so that the slow
    # records below make the stalled-partition path run too.
    monkeypatch.setattr(consumer_loop, "STALL", 0.05)
    jobs = EventTopic(env.name("churn"), Job, partition_key="partition_key", partitions=PARTITIONS)
    handled: dict[int, int] = {}
    order: dict[int, list[int]] = {}
    paused_seen: set[TopicPartition] = set()

    async def main() -> None:
        svc = env.service("churn", max_in_flight=5, max_buffered=8, poll_records=4)

        async def one(job: Job) -> None:
            # Slow, and now and then stuck for a while: pauses, resumes and stalls all happen.
            await asyncio.sleep(0.15 if job.n % 97 == 0 else 0.001)
            handled[job.n] = handled.get(job.n, 0) + 1
            order.setdefault(job.n % KEYS, []).append(job.n)

        if batch is None:
            svc.on(jobs)(one)
        else:

            @svc.on(jobs, batch=batch)
            async def many(batch_of_jobs: list[Job]) -> None:
                for job in batch_of_jobs:
                    await one(job)

        async def watch() -> None:
            while True:
                paused_seen.update(svc.paused())
                await asyncio.sleep(0.002)

        async with svc:
            watcher = asyncio.create_task(watch())
            for n in range(RECORDS):
                svc.emit(jobs, Job(n, f"k{n % KEYS}"))  # a key's jobs share a partition
            svc.flush()
            await eventually(
                lambda: len(handled) == RECORDS, env.timeout, lambda: f"{len(handled)} handled"
            )
            await asyncio.sleep(0.2)  # a record handled twice would show up now
            watcher.cancel()
        # Stopped: everything handled is committed, up to the end of every partition.
        with env.admin() as admin:
            ends = {
                TopicPartition(jobs.name, p): o.latest for p, o in admin.offsets(jobs.name).items()
            }
            assert sum(ends.values()) == RECORDS
            assert admin.committed(svc.group, jobs.name) == {tp: o for tp, o in ends.items() if o}

    run(main())
    doubled = {n: c for n, c in handled.items() if c != 1}
    assert not doubled, f"records handled more than once: {doubled}"
    assert sorted(handled) == list(range(RECORDS)), "every record handled"
    for key, ns in order.items():
        assert ns == sorted(ns), f"jobs of key k{key} out of order: {ns}"
    assert paused_seen, "the bounds were small enough to pause partitions (the test's premise)"
