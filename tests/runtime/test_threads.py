"""Daemon threads for user code: results, errors and context come back; exit is not held."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from ferryman.runtime.threads import DaemonThreads, in_thread

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


def test_results_errors_and_context_cross_back() -> None:
    def echo(x: int) -> tuple[int, str, bool]:
        return x, request_id.get(), threading.current_thread().daemon

    def fail() -> None:
        raise ValueError("boom")

    async def main() -> None:
        request_id.set("r-1")
        got = await asyncio.gather(*(in_thread(echo, i) for i in range(20)))
        assert got == [(i, "r-1", True) for i in range(20)]
        with pytest.raises(ValueError, match="boom"):
            await in_thread(fail)

    asyncio.run(main())


def test_a_call_that_never_returns_holds_a_daemon_thread_and_not_the_others() -> None:
    pool = DaemonThreads(2, "test-pool")
    release = threading.Event()
    stuck = pool.submit(release.wait)
    try:
        assert pool.submit(lambda: threading.current_thread().daemon).result(10) is True
        assert not stuck.done()
        names = {t.name: t.daemon for t in threading.enumerate() if t.name.startswith("test-pool")}
        assert names
        assert all(names.values()), names
    finally:
        release.set()
    assert stuck.result(10) is True
