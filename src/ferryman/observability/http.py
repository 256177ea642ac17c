"""The HTTP endpoints of running services: ``/metrics``, ``/health/live``, ``/health/ready``.

One server serves every service of the process (``ferryman run a:x b:y --http-port P``): the
services' registries are merged into one exposition, their health checks into one answer. It
runs in a thread with an event loop of its own, so a scrape or a slow check (a registry that
does not answer) never holds the services' loop, and ``/health/live`` can tell whether that
loop still turns.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ferryman.observability.health import Check

CHECK_TIMEOUT = 5.0
"""Seconds a health check may take before it counts as failed (a registry that hangs)."""
LOOP_TIMEOUT = 5.0
"""Seconds the services' event loop may take to run a no-op before it counts as stuck."""


class Observed(Protocol):
    """What the server needs of a service (a Service is one)."""

    name: str

    @property
    def metrics_registry(self) -> CollectorRegistry | None: ...
    def live(self) -> list[Check]: ...
    def ready(self) -> list[Check]: ...


class _Merged:
    """The services' registries as one: families of the same name get each other's samples
    (their ``service`` label tells them apart), so each HELP/TYPE line appears once."""

    def __init__(self, registries: Iterable[CollectorRegistry]) -> None:
        self._registries = list(registries)

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for registry in self._registries:
            for family in registry.collect():
                # prometheus-client's _created series (a counter's creation time) double the
                # page and say nothing an operator asks; the client can only drop them globally.
                family.samples = [s for s in family.samples if not s.name.endswith("_created")]
                seen = families.get(family.name)
                if seen is None:
                    families[family.name] = family
                else:
                    seen.samples.extend(family.samples)
        yield from families.values()


def exposition(services: Sequence[Observed]) -> bytes:
    """The Prometheus text exposition of every service's metrics."""
    registries = [s.metrics_registry for s in services if s.metrics_registry is not None]
    return generate_latest(_Merged(registries))


def make_app(
    services: Sequence[Observed], loop: asyncio.AbstractEventLoop | None = None
) -> Starlette:
    """The endpoints for ``services``; ``loop`` is theirs (liveness checks that it turns)."""

    async def metrics(_: Request) -> Response:
        body = await asyncio.to_thread(exposition, services)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def live(_: Request) -> Response:
        checks = {s.name: await _run(s.live) for s in services}
        if loop is not None:
            checks["(event loop)"] = [await _loop_turns(loop)]
        return _answer(checks, "live", "not live")

    async def ready(_: Request) -> Response:
        names = [s.name for s in services]
        results = await asyncio.gather(*(_run(s.ready) for s in services))
        return _answer(dict(zip(names, results, strict=True)), "ready", "not ready")

    async def index(_: Request) -> Response:
        return PlainTextResponse("ferryman: /metrics /health/live /health/ready\n")

    return Starlette(
        routes=[
            Route("/", index),
            Route("/metrics", metrics),
            Route("/health/live", live),
            Route("/health/ready", ready),
        ]
    )


async def _run(checks: Callable[[], list[Check]]) -> list[Check]:
    try:
        return await asyncio.wait_for(asyncio.to_thread(checks), CHECK_TIMEOUT)
    except TimeoutError:
        return [Check("checks", False, f"no answer within {CHECK_TIMEOUT:.0f}s")]
    except Exception as exc:
        return [Check("checks", False, f"{type(exc).__name__}: {exc}")]


async def _loop_turns(loop: asyncio.AbstractEventLoop) -> Check:
    if loop.is_closed():
        return Check("event loop", False, "closed")
    done = asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop)
    try:
        await asyncio.wait_for(asyncio.wrap_future(done), LOOP_TIMEOUT)
    except TimeoutError:
        return Check("event loop", False, f"did not run a no-op within {LOOP_TIMEOUT:.0f}s")
    return Check("event loop", True, "turns")


def _answer(checks: dict[str, list[Check]], good: str, bad: str) -> Response:
    ok = all(c.ok for cs in checks.values() for c in cs)
    body: dict[str, Any] = {
        "status": good if ok else bad,
        "services": {
            name: {c.name: {"ok": c.ok, "detail": c.detail} for c in cs}
            for name, cs in checks.items()
        },
    }
    return JSONResponse(body, status_code=200 if ok else 503)


class HttpServer:
    """The endpoints of ``services`` on ``host:port``, in a thread of their own."""

    def __init__(
        self,
        services: Sequence[Observed],
        port: int,
        host: str = "127.0.0.1",
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        config = uvicorn.Config(
            make_app(services, loop),
            host=host,
            port=port,
            log_level="warning",
            lifespan="off",
            access_log=False,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.host, self.port = host, port

    def start(self, timeout: float = 10.0) -> None:
        """Start serving; raises OSError when the port cannot be bound."""
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise OSError(
                f"cannot serve HTTP on {self.host}:{self.port}: {exc.strerror or exc}; "
                "choose another --http-port (0: any free port)"
            ) from exc
        sock.listen(128)
        self._socket = sock
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="ferryman-http", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"the HTTP server on {self.host}:{self.port} did not start")
            self._thread.join(0.02)

    @property
    def bound_port(self) -> int:
        """The port served (the one picked when ``port`` was 0)."""
        if self._socket is None:
            return self.port
        port: int = self._socket.getsockname()[1]
        return port

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        if self._socket is not None:
            self._socket.close()
