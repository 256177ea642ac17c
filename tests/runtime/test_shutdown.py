"""Stopping: fetching stops, what was fetched is handled, and exactly that is committed."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ferryman.broker import open_broker
from ferryman.records import TopicPartition
from ferryman.topics import EventTopic

from .conftest import Env, eventually, run


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
            svc.emit_nowait(jobs, Job(n))
        svc.flush()
        await eventually(lambda: len(handled) >= 20, env.timeout, lambda: len(handled))
        loop = svc.consumer
        assert loop is not None
        fetched = svc.stats["handled"] + sum(loop.in_flight().values())
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
