"""A clock a test moves by hand: retry back-off and republish cadences without sleeping."""

from __future__ import annotations

import asyncio
import threading
import time

from ferryman.clock import Clock
from ferryman.clock import install as install_clock

_THREAD_RECHECK = 0.02
"""Seconds a thread waiting on the fake clock sleeps before it looks at its stop event again
(setting a threading.Event cannot wake a condition it does not know of)."""


class FakeClock:
    """Time that passes only when the test calls ``advance``.

    Installed (``install()``, or the ``ferryman_clock`` fixture), it paces the waits that read
    ``ferryman.clock``: a handler's retry back-off and a republisher's ``every``.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._cond = threading.Condition()
        self._threads = 0
        self._sleepers: list[tuple[float, asyncio.AbstractEventLoop, asyncio.Future[bool]]] = []
        self._previous: Clock | None = None

    def monotonic(self) -> float:
        with self._cond:
            return self._now

    @property
    def waiting(self) -> int:
        """How many waits (threads and tasks) are waiting for this clock to move."""
        with self._cond:
            return self._threads + len(self._sleepers)

    def advance(self, seconds: float) -> None:
        """Move time forward; every wait that is due now returns."""
        if seconds < 0:
            raise ValueError(f"advance({seconds!r}): time only moves forward; write seconds >= 0")
        with self._cond:
            self._now += seconds
            due = [s for s in self._sleepers if s[0] <= self._now]
            self._sleepers = [s for s in self._sleepers if s[0] > self._now]
            self._cond.notify_all()
        for _, loop, future in due:
            loop.call_soon_threadsafe(_resolve, future)

    async def until_waiting(self, count: int = 1, timeout: float = 30.0) -> None:
        """Wait (really) until ``count`` waits are parked on this clock, e.g. a failed handler
        in its back-off, so that ``advance`` then releases them."""
        deadline = time.monotonic() + timeout
        while self.waiting < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.waiting} wait(s) on the fake clock after {timeout}s, expected {count}: "
                    "is the service started, and does its handler fail (retry) or its "
                    "republisher have work?"
                )
            await asyncio.sleep(0.005)

    # -- the Clock protocol (ferryman.clock) -----------------------------------------------

    def wait(self, event: threading.Event, seconds: float) -> bool:
        with self._cond:
            deadline = self._now + seconds
            self._threads += 1
            try:
                while not event.is_set() and self._now < deadline:
                    self._cond.wait(_THREAD_RECHECK)
            finally:
                self._threads -= 1
        return event.is_set()

    async def sleep(self, seconds: float, interrupt: asyncio.Event) -> None:
        if seconds <= 0 or interrupt.is_set():
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        with self._cond:
            entry = (self._now + seconds, loop, future)
            self._sleepers.append(entry)
        interrupted: asyncio.Future[bool] = asyncio.ensure_future(interrupt.wait())
        try:
            await asyncio.wait([future, interrupted], return_when=asyncio.FIRST_COMPLETED)
        finally:
            interrupted.cancel()
            with self._cond:
                if entry in self._sleepers:
                    self._sleepers.remove(entry)

    # -- installing -------------------------------------------------------------------------

    def install(self) -> FakeClock:
        """Make this the clock of every timed wait in the process, until ``uninstall``."""
        self._previous = install_clock(self)
        return self

    def uninstall(self) -> None:
        install_clock(self._previous)
        self._previous = None

    def __enter__(self) -> FakeClock:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.uninstall()


def _resolve(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_result(True)
