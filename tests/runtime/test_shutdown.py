"""Stopping: fetching stops, what was fetched is handled, and exactly that is committed."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from tests.waiting import eventually

from ferryman.broker import open_broker
from ferryman.records import TopicPartition
from ferryman.topics import EventTopic

from .conftest import Env, run


@dataclass
class Job:
    n: int


def test_stop_finishes_fetched_work_and_commits_it(env: Env) -> None:
    jobs = EventTopic(env.name("jobs"), Job, partitions=1)
    handled: list[int] = []
    total = 1000

    async def main() -> None:
        svc = env.service("stopper", max_in_flight=40, poll_records=10, commit_interval=60)

        @svc.on(jobs)
        async def work(job: Job) -> None:
            await asyncio.sleep(0.002)
            handled.append(job.n)

        await svc.start()
        for n in range(total):
            svc.emit(jobs, Job(n))
        svc.flush()
        await eventually(lambda: len(handled) >= 20, env.timeout, lambda: len(handled))
        fetched = svc.stats["handled"] + sum(svc.in_flight().values())
        await svc.stop()
        assert len(handled) >= fetched, "what was fetched before stop() was handled"

    run(main())
    assert handled == list(range(len(handled))), "in order, none skipped"
    assert len(handled) < total, "fetching stopped: the rest is left for the next run"
    broker = open_broker(env.broker)
    admin = broker.admin()
    try:
        # commit_interval=60 s: this commit can only come from the shutdown.
        assert admin.committed(env.name("stopper"), jobs.name) == {
            TopicPartition(jobs.name, 0): len(handled)
        }
    finally:
        admin.close()
        broker.close()


def test_stop_during_a_retry_commits_nothing_past_the_failing_record(env: Env) -> None:
    jobs = EventTopic(env.name("jobs"), Job, partitions=1)
    handled: list[int] = []
    attempts: list[int] = []

    async def main() -> None:
        # Shorter than shutdown_timeout, so the drain would outlive it if stop() did not end it.
        svc = env.service("stopper", retries=3, backoff=3, backoff_max=3, commit_interval=60)

        @svc.on(jobs)
        async def work(job: Job) -> None:
            if job.n == 1:
                attempts.append(job.n)
                raise RuntimeError("job 1 fails until it is redelivered")
            handled.append(job.n)

        await svc.start()
        for n in range(4):
            await svc.emit(jobs, Job(n))
        await eventually(lambda: attempts, env.timeout, lambda: (handled, attempts))
        await svc.stop()
        assert handled == [0], "nothing after the record being retried is handled"

        again = env.service("stopper")
        redelivered: list[int] = []

        @again.on(jobs)
        async def work_again(job: Job) -> None:
            redelivered.append(job.n)

        async with again:
            await eventually(lambda: len(redelivered) == 3, env.timeout, lambda: redelivered)

        assert redelivered == [1, 2, 3], "the retried record and what follows are read again"

    run(main())
