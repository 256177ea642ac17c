"""Back-pressure: a slow partition is paused once max_in_flight records wait, then resumed."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from tests.waiting import eventually

from ferryman.records import TopicPartition
from ferryman.topics import EventTopic

from .conftest import Env, run


@dataclass
class Job:
    n: int


def test_a_blocked_handler_pauses_its_partition_and_bounds_what_is_fetched(env: Env) -> None:
    jobs = EventTopic(env.name("jobs"), Job, partitions=1)
    handled: list[int] = []

    async def main() -> None:
        svc = env.service("slow", max_in_flight=20, poll_records=10)
        gate = asyncio.Event()

        @svc.on(jobs)
        async def work(job: Job) -> None:
            await gate.wait()
            handled.append(job.n)

        async with svc:
            for n in range(300):
                svc.emit(jobs, Job(n))
            svc.flush()
            tp = TopicPartition(jobs.name, 0)
            await eventually(lambda: tp in svc.paused(), env.timeout, svc.in_flight)
            # Paused is not enough: several polls later, still nothing more was fetched.
            polls = svc.stats["polls"]
            await eventually(
                lambda: svc.stats["polls"] >= polls + 5, env.timeout, lambda: svc.stats["polls"]
            )
            fetched = svc.in_flight()[tp]
            assert 20 <= fetched < 20 + 10, "fetching stops once max_in_flight records wait"
            gate.set()
            await eventually(lambda: len(handled) == 300, env.timeout, lambda: len(handled))
            await eventually(lambda: not svc.paused(), env.timeout, svc.paused)

    run(main())
    assert handled == list(range(300))
