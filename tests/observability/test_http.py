"""The HTTP endpoints: several services on one /metrics, and health that follows the registry
going away and coming back."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.registry_server import RegistryServer, free_port
from tests.runtime.conftest import FAST
from tests.waiting import eventually

from ferryman.observability.http import HttpServer
from ferryman.service import Service
from ferryman.topics import EventTopic


@dataclass
class Ping:
    n: int


async def get(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=15) as client:
        return await client.get(url)


def test_one_metrics_endpoint_serves_several_services(tmp_path: Path) -> None:
    pings = EventTopic("obs-http-pings", Ping, partitions=1)
    where: dict[str, Any] = {
        "broker": f"embedded:{tmp_path / 'broker.db'}",
        "registry": f"embedded:{tmp_path / 'registry.db'}",
        "config": FAST,
    }
    handled: list[int] = []

    async def main() -> str:
        a, b = Service("alpha", **where), Service("beta", **where)

        @b.on(pings)
        def got(p: Ping) -> None:
            handled.append(p.n)

        server = HttpServer([a, b], free_port(), loop=asyncio.get_running_loop())
        server.start()
        try:
            async with b:
                for n in range(3):
                    await a.emit(pings, Ping(n))
                await eventually(lambda: len(handled) == 3, 20, "beta handled 3 pings")
                return (await get(f"http://127.0.0.1:{server.bound_port}/metrics")).text
        finally:
            await a.stop()
            server.stop()

    text = asyncio.run(main())
    assert 'ferryman_records_produced_total{service="alpha",topic="obs-http-pings"} 3.0' in text
    assert (
        'ferryman_records_consumed_total{group="beta",partition="0",service="beta",'
        'topic="obs-http-pings"} 3.0'
    ) in text
    assert text.count("# HELP ferryman_records_consumed_total") == 1
    assert text.count("# TYPE ferryman_handler_duration_seconds histogram") == 1
    assert "_created" not in text


def test_ready_follows_the_registry_going_away_and_coming_back(
    tmp_path: Path, registry_server: RegistryServer
) -> None:
    pings = EventTopic("obs-health-pings", Ping, partitions=2)

    async def main() -> list[tuple[int, dict[str, Any]]]:
        svc = Service(
            "watched",
            broker=f"embedded:{tmp_path / 'broker.db'}",
            registry=registry_server.url,
            config=FAST,
        )

        @svc.on(pings)
        def got(p: Ping) -> None:
            pass

        server = HttpServer([svc], free_port(), loop=asyncio.get_running_loop())
        server.start()
        url = f"http://127.0.0.1:{server.bound_port}/health/ready"
        seen: list[tuple[int, dict[str, Any]]] = []

        async def status(expected: int, what: str) -> None:
            deadline = asyncio.get_running_loop().time() + 30
            while True:
                answer = await get(url)
                seen.append((answer.status_code, answer.json()))
                if answer.status_code == expected:
                    return
                assert asyncio.get_running_loop().time() < deadline, f"{what}: {seen[-1]}"
                await asyncio.sleep(0.1)

        try:
            async with svc:
                await status(200, "ready with the registry up")
                registry_server.stop()
                await status(503, "not ready with the registry down")
                live = await get(f"http://127.0.0.1:{server.bound_port}/health/live")
                assert live.status_code == 200, live.text  # down is not dead
                registry_server.start()
                await status(200, "ready again with the registry back")
        finally:
            server.stop()
        return seen

    seen = asyncio.run(main())
    down = next(body for code, body in seen if code == 503)
    checks = down["services"]["watched"]
    assert checks["registry"]["ok"] is False
    assert checks["broker"]["ok"] is True
    assert checks["partitions"] == {"ok": True, "detail": "2 assigned"}
    assert seen[-1][1]["status"] == "ready"


def test_a_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = HttpServer([], port)
        with pytest.raises(OSError, match=f"cannot serve HTTP on 127.0.0.1:{port}"):
            server.start()
