"""Readiness follows a Kafka broker going away and coming back: a private one-broker Kafka
(scripts/kafka.sh, a directory and port of its own) is stopped under a running service and
started again on its data."""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.kafka.conftest import free_port_base, in_ci, run_script
from tests.registry_server import free_port
from tests.runtime.conftest import FAST

from ferryman.observability.http import HttpServer
from ferryman.service import Service
from ferryman.topics import EventTopic

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@dataclass
class Ping:
    n: int


@pytest.fixture
def private_kafka(tmp_path: Path) -> Any:
    if not in_ci() and not os.environ.get("FERRYMAN_TEST_KAFKA"):
        pytest.skip("Kafka tests are off: set FERRYMAN_TEST_KAFKA (this one starts its own broker)")
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    if missing:
        reason = f"a private Kafka needs {' and '.join(missing)} on PATH (see scripts/kafka.sh)"
        if in_ci():
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(reason)
    directory = tmp_path / "kafka"
    out = run_script("start", "--dir", str(directory), "--port", str(free_port_base()))
    try:
        yield out.strip().rsplit("=", 1)[-1], directory
    finally:
        run_script("stop", "--dir", str(directory))


def test_ready_follows_the_broker_going_away_and_coming_back(
    tmp_path: Path, private_kafka: tuple[str, Path]
) -> None:
    bootstrap, directory = private_kafka
    pings = EventTopic("obs-broker-health", Ping, partitions=2)

    async def main() -> list[tuple[int, dict[str, Any]]]:
        svc = Service(
            "watched-broker",
            broker=f"kafka://{bootstrap}",
            registry=f"embedded:{tmp_path / 'registry.db'}",
            config=FAST,
        )

        @svc.on(pings)
        def got(p: Ping) -> None:
            pass

        server = HttpServer([svc], free_port(), loop=asyncio.get_running_loop())
        server.start()
        url = f"http://127.0.0.1:{server.bound_port}/health/ready"
        seen: list[tuple[int, dict[str, Any]]] = []

        async def status(expected: int, what: str, timeout: float) -> None:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while True:
                async with httpx.AsyncClient(timeout=15) as client:
                    answer = await client.get(url)
                seen.append((answer.status_code, answer.json()))
                if answer.status_code == expected:
                    return
                assert loop.time() < deadline, f"{what}: {seen[-1]}"
                await asyncio.sleep(0.2)

        try:
            async with svc:
                await status(200, "ready with the broker up", 60)
                await asyncio.to_thread(run_script, "stop", "--dir", str(directory))
                await status(503, "not ready with the broker down", 60)
                await asyncio.to_thread(run_script, "start", "--dir", str(directory))
                await status(200, "ready again with the broker back", 120)
        finally:
            server.stop()
        return seen

    seen = asyncio.run(main())
    # librdkafka lists topics from its cache after the broker went away: the consumer's lost
    # partitions are what says it (docs/operating.md)
    down = [body["services"]["watched-broker"] for code, body in seen if code == 503]
    assert down
    assert all(checks["registry"]["ok"] for checks in down)
    assert any(not checks["partitions"]["ok"] or not checks["broker"]["ok"] for checks in down)
    assert seen[-1][1]["status"] == "ready"
