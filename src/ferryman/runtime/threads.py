"""Threads for user code: sync handlers and responders run in daemon threads of ferryman's own.

asyncio's default executor (``asyncio.to_thread``) joins its threads when the loop closes and
again at interpreter exit, so one handler that never returns would keep a stopped service's
process alive forever. A stuck daemon thread does not: the service stops after its
``shutdown_timeout``, leaving that record uncommitted, and the process exits.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

T = TypeVar("T")

_Work = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class DaemonThreads(Executor):
    """A pool of daemon threads, started as needed up to ``max_workers`` and kept for reuse."""

    def __init__(self, max_workers: int, name: str) -> None:
        self._max = max_workers
        self._name = name
        self._work: queue.SimpleQueue[_Work] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._threads = 0

    def reset_after_fork(self) -> None:
        """Forget the parent's threads: a forked child has none of them."""
        self._work = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._threads = 0

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        self._work.put((future, fn, args, kwargs))
        if not self._idle.acquire(blocking=False):
            with self._lock:
                if self._threads < self._max:
                    self._threads += 1
                    threading.Thread(
                        target=self._serve, name=f"{self._name}-{self._threads}", daemon=True
                    ).start()
        return future

    def _serve(self) -> None:
        while True:
            future, fn, args, kwargs = self._work.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as exc:
                    future.set_exception(exc)
                del future, fn, args, kwargs  # not kept alive while the thread waits
            self._idle.release()


_pool = DaemonThreads(min(32, (os.cpu_count() or 1) + 4), "ferryman-handler")
os.register_at_fork(after_in_child=_pool.reset_after_fork)


async def in_thread(fn: Callable[..., T], /, *args: Any) -> T:
    """``asyncio.to_thread`` on a daemon thread: ``fn(*args)`` with the caller's context."""
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, fn, *args)
    return await loop.run_in_executor(_pool, call)
