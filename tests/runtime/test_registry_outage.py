"""A schema registry outage is transient: records wait for it, in order, and are never dead-lettered.

The registry is a real `ferryman registry serve` process, stopped and restarted on its port.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.waiting import eventually

from ferryman.broker import open_broker
from ferryman.errors import RegistryError
from ferryman.topics import EventTopic

from .conftest import Env, run

SERVE = "from ferryman.cli import main; main()"


@dataclass
class Reading:
    n: int


class RegistryProcess:
    """`ferryman registry serve` on one port, which can be stopped and started again."""

    def __init__(self, path: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port: int = s.getsockname()[1]
        self.path = path
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, deadline_s: float = 30.0) -> None:
        command = [sys.executable, "-c", SERVE, "registry", "serve", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            [*command, "--path", str(self.path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"registry serve exited: {self.proc.communicate()[1].decode()}")
            try:
                if httpx.get(self.url + "/", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)  # polling interval while the server starts
        pytest.fail(f"registry serve did not answer at {self.url} within {deadline_s}s")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryProcess]:
    server = RegistryProcess(tmp_path / "served-registry.db")
    server.start()
    yield server
    server.stop()


def dlq_size(env: Env, topic: str) -> int:
    broker = open_broker(env.broker)
    try:
        return sum(p.latest - p.earliest for p in broker.admin().offsets(topic).values())
    finally:
        broker.close()


async def emit_then_stop_registry(
    env: Env, registry: RegistryProcess, readings: EventTopic[Reading], count: int
) -> None:
    """Readings 0..count-1 on the topic, then the registry down. Services made after this have
    a registry client with no cached schema, so decoding must ask the registry."""
    env.registry = registry.url
    async with env.service("sensor") as producer:
        for n in range(count):
            await producer.emit(readings, Reading(n))
    registry.stop()


def test_records_wait_for_the_registry_in_order_and_are_not_dead_lettered(
    env: Env, registry: RegistryProcess
) -> None:
    readings = EventTopic(env.name("readings"), Reading, partitions=1)
    handled: list[int] = []

    async def main() -> None:
        await emit_then_stop_registry(env, registry, readings, 5)
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
            registry.start()
            await eventually(lambda: len(handled) == 5, env.timeout, lambda: handled)
        assert svc.stats["dead_lettered"] == 0

    run(main())
    assert handled == [0, 1, 2, 3, 4]
    assert dlq_size(env, readings.name + ".dlq") == 0


def test_registry_retries_stops_on_an_outage_without_committing(
    env: Env, registry: RegistryProcess
) -> None:
    """registry_retries, not the handlers' retries nor on_error, bounds the wait."""
    readings = EventTopic(env.name("readings"), Reading, partitions=1)
    handled: list[int] = []

    async def main() -> None:
        await emit_then_stop_registry(env, registry, readings, 3)
        svc = env.service("logger", retries=0, registry_retries=2)

        @svc.on(readings)
        async def log_reading(reading: Reading) -> None:
            handled.append(reading.n)

        async with svc:
            with pytest.raises(RegistryError, match="not committed; make the registry reachable"):
                await svc.wait()
        assert svc.stats["dead_lettered"] == 0
        registry.start()
        again = env.service("logger")

        @again.on(readings)
        async def log_again(reading: Reading) -> None:
            handled.append(reading.n)

        async with again:
            await eventually(lambda: len(handled) == 3, env.timeout, lambda: handled)

    run(main())
    assert handled == [0, 1, 2]
    assert dlq_size(env, readings.name + ".dlq") == 0
