"""The clock that timed waits read: retry back-off and republish cadences.

Production code asks ``current()`` for the clock at the moment it waits; it is the system's
clock unless a test installed another (``ferryman.testing.FakeClock``), so a test can move
time forward instead of sleeping through a back-off or a republisher's ``every``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Time and timed waits, for the waits that a test may want to control."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for intervals)."""
        ...

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """In a thread: wait until ``event`` is set or ``seconds`` passed; whether it is set."""
        ...

    async def sleep(self, seconds: float, interrupt: asyncio.Event) -> None:
        """On the event loop: sleep ``seconds``, or less if ``interrupt`` is set."""
        ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(seconds)

    async def sleep(self, seconds: float, interrupt: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(interrupt.wait(), seconds)


SYSTEM = SystemClock()
_current: Clock = SYSTEM


def current() -> Clock:
    """The clock timed waits use now."""
    return _current


def install(clock: Clock | None) -> Clock:
    """Make ``clock`` (None: the system's) the one timed waits use; returns the previous one."""
    global _current
    previous, _current = _current, clock or SYSTEM
    return previous
