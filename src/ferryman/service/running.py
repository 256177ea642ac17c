"""Running services until SIGTERM/SIGINT, or until one of them fails."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Sequence
from typing import Protocol


class Runnable(Protocol):
    """What ``run_services`` needs of a service (a Service is one)."""

    failure: BaseException | None

    async def start(self) -> None: ...
    async def wait(self) -> None: ...
    async def stop(self) -> None: ...


async def run_services(services: Sequence[Runnable]) -> None:
    """Run ``services`` until a signal or until one fails; then stop all of them.

    A failure (HandlerError with ``on_error='stop'``, a lost broker) is raised after every
    service stopped.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        # Signal handlers can only be set from the main thread; elsewhere the caller stops us.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    started: list[Runnable] = []
    try:
        for svc in services:
            await svc.start()
            started.append(svc)
        waits = [asyncio.ensure_future(svc.wait()) for svc in started]
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait([stopper, *waits], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        for w in waits:
            w.cancel()
        await asyncio.gather(stopper, *waits, return_exceptions=True)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        for svc in reversed(started):
            await svc.stop()
    for svc in started:
        if svc.failure is not None:
            raise svc.failure
