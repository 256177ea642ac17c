"""The one way tests wait: poll a condition until it is truthy or a deadline passes.

``wait_until`` blocks; ``eventually`` is its asyncio twin (it yields to the loop between
polls). Both return the condition's truthy value and, at the deadline, fail with what was
awaited and the last value (or error) seen. Nothing here sleeps to let something happen: the
sleep between polls is only the polling interval.

It ships in the package because the backend contract suite (``ferryman.testing.contract``)
waits with it; this repository's tests import it as ``tests.waiting`` too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

What = str | Callable[[], object]
"""What is awaited: a sentence, or a callable giving one (or any value) at the moment of failure."""


class _Poll(Generic[T]):
    """One wait's state: the deadline, the last value seen, the last error ignored."""

    def __init__(
        self,
        condition: Callable[[], T],
        timeout: float,
        what: What,
        ignore: tuple[type[BaseException], ...],
    ) -> None:
        self.condition = condition
        self.timeout = timeout
        self.what = what
        self.ignore = ignore
        self.deadline = time.monotonic() + timeout
        self.polls = 0
        self.last: object = None
        self.error: BaseException | None = None

    def attempt(self) -> tuple[T] | None:
        """Call the condition once: ``(value,)`` when truthy; raise once the deadline passed."""
        self.polls += 1
        try:
            value = self.condition()
        except self.ignore as exc:  # a transient failure counts as "not yet"
            self.error = exc
        else:
            self.last = value
            if value:
                return (value,)
        if time.monotonic() > self.deadline:
            raise AssertionError(self.failure())
        return None

    def failure(self) -> str:
        what = self.what() if callable(self.what) else self.what
        # callers name what they await or what went missing: "not within" reads right for both
        said = f"not within {self.timeout}s ({self.polls} polls): {what or 'the condition'}"
        said += f"; last value seen: {self.last!r}"
        if self.error is not None:
            said += f"; last error: {self.error!r}"
        return said


def wait_until(
    condition: Callable[[], T],
    timeout: float,
    what: What = "",
    *,
    interval: float = 0.02,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``condition`` until it returns something truthy, and return that; fail after
    ``timeout`` seconds naming ``what`` and the last value. Errors of ``ignore`` mean "not yet"."""
    poll = _Poll(condition, timeout, what, ignore)
    while True:
        if (got := poll.attempt()) is not None:
            return got[0]
        time.sleep(interval)


async def eventually(
    condition: Callable[[], T],
    timeout: float,
    what: What = "",
    *,
    interval: float = 0.01,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """``wait_until`` for async tests: the event loop runs between polls."""
    poll = _Poll(condition, timeout, what, ignore)
    while True:
        if (got := poll.attempt()) is not None:
            return got[0]
        await asyncio.sleep(interval)
