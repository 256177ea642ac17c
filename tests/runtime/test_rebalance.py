"""A second instance joins mid-stream: partitions move, and committing on revoke means the
new owner resumes exactly where the old one stopped (no record handled twice, none lost)."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass

from tests.waiting import eventually

from ferryman.service import Service
from ferryman.topics import EventTopic

from .conftest import Env, run


@dataclass
class Tick:
    key: str
    seq: int


def test_a_joining_instance_takes_partitions_without_duplicates(env: Env) -> None:
    ticks = EventTopic(env.name("ticks"), Tick, partition_key="key", partitions=4)
    handled: Counter[tuple[str, int]] = Counter()
    by_instance: Counter[str] = Counter()
    total = 2000

    async def main() -> None:
        session = {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"}

        def instance(label: str) -> Service:
            svc = env.service("group", consumer_config=session)

            @svc.on(ticks)
            async def handle(tick: Tick) -> None:
                handled[(tick.key, tick.seq)] += 1
                by_instance[label] += 1
                await asyncio.sleep(0.0005)

            return svc

        first, second = instance("first"), instance("second")
        producer = env.service("producer")
        sent = 0

        async def send(count: int) -> None:
            nonlocal sent
            for _ in range(count):
                producer.emit(ticks, Tick(f"k{sent % 40}", sent))
                sent += 1
            await asyncio.to_thread(producer.flush)

        await send(total)
        async with first:
            await eventually(lambda: by_instance["first"] >= 200, env.timeout, lambda: by_instance)
            async with second:
                # Keep the stream going until the second instance handles something: the first
                # alone may finish the backlog before the group has rebalanced (CI saw it).
                deadline = asyncio.get_running_loop().time() + env.timeout * 3
                while not by_instance["second"] and asyncio.get_running_loop().time() < deadline:
                    await send(40)
                    await asyncio.sleep(0.05)
                await eventually(
                    lambda: len(handled) == sent, env.timeout * 3, lambda: (len(handled), sent)
                )
        await producer.stop()

    run(main())
    assert by_instance["second"] > 0, "the second instance never got a partition"
    duplicates = {k: n for k, n in handled.items() if n > 1}
    assert duplicates == {}
