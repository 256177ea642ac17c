"""A schema registry outage is transient: records wait for it, in order, and are never dead-lettered.

The registry is a real `ferryman registry serve` process (the ``registry_server`` fixture),
stopped and restarted on its port.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from tests.registry_server import RegistryServer
from tests.waiting import eventually

from ferryman.broker import open_broker
from ferryman.errors import RegistryError
from ferryman.topics import EventTopic

from .conftest import Env, run


@dataclass
class Reading:
    n: int


def dlq_size(env: Env, topic: str) -> int:
    broker = open_broker(env.broker)
    try:
        return sum(p.latest - p.earliest for p in broker.admin().offsets(topic).values())
    finally:
        broker.close()


async def emit_then_stop_registry(
    env: Env, registry_server: RegistryServer, readings: EventTopic[Reading], count: int
) -> None:
    """Readings 0..count-1 on the topic, then the registry down. Services made after this have
    a registry client with no cached schema, so decoding must ask the registry."""
    env.registry = registry_server.url
    async with env.service("sensor") as producer:
        for n in range(count):
            await producer.emit(readings, Reading(n))
    registry_server.stop()


def test_records_wait_for_the_registry_in_order_and_are_not_dead_lettered(
    env: Env, registry_server: RegistryServer
) -> None:
    readings = EventTopic(env.name("readings"), Reading, partitions=1)
    handled: list[int] = []

    async def main() -> None:
        await emit_then_stop_registry(env, registry_server, readings, 5)
        svc = env.service("logger", retries=1)

        @svc.on(readings)
        async def log_reading(reading: Reading) -> None:
            handled.append(reading.n)

        async with svc:
            await eventually(
                lambda: svc.stats["registry_retries"] >= 3 or svc.stats["dead_lettered"],
                env.timeout,
                lambda: svc.stats,
            )
            assert svc.stats["dead_lettered"] == 0
            assert handled == []
            registry_server.start()
            await eventually(lambda: len(handled) == 5, env.timeout, lambda: handled)
        assert svc.stats["dead_lettered"] == 0

    run(main())
    assert handled == [0, 1, 2, 3, 4]
    assert dlq_size(env, readings.name + ".dlq") == 0


def test_registry_retries_stops_on_an_outage_without_committing(
    env: Env, registry_server: RegistryServer
) -> None:
    """registry_retries, not the handlers' retries nor on_error, bounds the wait."""
    readings = EventTopic(env.name("readings"), Reading, partitions=1)
    handled: list[int] = []

    async def main() -> None:
        await emit_then_stop_registry(env, registry_server, readings, 3)
        svc = env.service("logger", retries=0, registry_retries=2)

        @svc.on(readings)
        async def log_reading(reading: Reading) -> None:
            handled.append(reading.n)

        async with svc:
            with pytest.raises(RegistryError, match="not committed; make the registry reachable"):
                await svc.wait()
        assert svc.stats["dead_lettered"] == 0
        registry_server.start()
        again = env.service("logger")

        @again.on(readings)
        async def log_again(reading: Reading) -> None:
            handled.append(reading.n)

        async with again:
            await eventually(lambda: len(handled) == 3, env.timeout, lambda: handled)

    run(main())
    assert handled == [0, 1, 2]
    assert dlq_size(env, readings.name + ".dlq") == 0
