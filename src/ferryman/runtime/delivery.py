"""Delivery: the handle a send returns, awaitable and blocking, as a concurrent future is.

``await d`` in async code, ``d.result(timeout)`` elsewhere, or neither: the record is queued and
flushed when the service stops. A failure that nobody retrieved is logged when the handle goes,
as asyncio does for a task's exception, so a send nobody waited on never fails silently.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable, Generator
from typing import Any, Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("ferryman.delivery")


class Delivery(Generic[T]):
    """A queued send: ``await d`` or ``d.result(timeout)`` gives its result once acknowledged."""

    __slots__ = ("_deadline", "_future", "_retrieved", "_timed_out", "what")

    def __init__(
        self,
        future: concurrent.futures.Future[T],
        what: str,
        *,
        deadline: float | None = None,
        timed_out: Callable[[], BaseException] | None = None,
        log_unretrieved: bool = True,
    ) -> None:
        """``what`` names the send in logs; past the monotonic ``deadline`` waiting raises
        ``timed_out()`` (e.g. RequestTimeout) rather than TimeoutError. ``log_unretrieved=False``
        for a handle whose failure another handle reports."""
        self._future = future
        self.what = what
        self._deadline = deadline
        self._timed_out = timed_out
        self._retrieved = not log_unretrieved

    def __repr__(self) -> str:
        state = "done" if self._future.done() else "pending"
        return f"<Delivery {self.what} {state}>"

    def done(self) -> bool:
        """Whether the send completed (acknowledged or failed)."""
        return self._future.done()

    def _wait_for(self, timeout: float | None) -> tuple[float | None, bool]:
        """How long to wait, and whether that wait ends at the deadline (not the timeout)."""
        if self._deadline is None:
            return timeout, False
        remaining = max(0.0, self._deadline - time.monotonic())
        if timeout is None or remaining <= timeout:
            return remaining, True
        return timeout, False

    def result(self, timeout: float | None = None) -> T:
        """Block until acknowledged (the send's result) or failed (its error is raised).

        TimeoutError after ``timeout`` seconds; the send goes on, so the call can be repeated."""
        self._retrieved = True
        wait, at_deadline = self._wait_for(timeout)
        try:
            return self._future.result(wait)
        except concurrent.futures.TimeoutError:
            if at_deadline and self._timed_out is not None:
                raise self._timed_out() from None
            raise

    def __await__(self) -> Generator[Any, None, T]:
        self._retrieved = True
        future = self._future
        if future.done():  # the common case when awaiting a batch of sends: no coroutine and
            return future.result()  # no asyncio future, one generator
        return (yield from self._wait().__await__())

    async def _wait(self) -> T:
        wait, at_deadline = self._wait_for(None)
        # shield: a cancelled or timed-out await must not cancel the send itself
        waiting = asyncio.shield(asyncio.wrap_future(self._future))
        try:
            return await asyncio.wait_for(waiting, wait)
        except TimeoutError:
            if at_deadline and self._timed_out is not None:
                raise self._timed_out() from None
            raise

    def __del__(self) -> None:
        if self._retrieved:
            return
        # Nobody can wait on this send any more: log its failure, now or when it completes.
        future = self._future
        if future.done():
            _log_failure(self.what)(future)
            return
        # A Kafka acknowledgement logs the failure itself: no callback per unawaited send.
        unretrieved = getattr(future, "unretrieved", None)
        if unretrieved is not None:
            unretrieved(self.what)
            return
        future.add_done_callback(_log_failure(self.what))


def _log_failure(what: str) -> Callable[[concurrent.futures.Future[Any]], None]:
    def log_failure(future: concurrent.futures.Future[Any]) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            log.error("%s failed and nobody awaited it: %r", what, exc, exc_info=exc)

    return log_failure
