"""The tests' one waiting helper: returns the truthy value, fails naming what it awaited."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from tests.waiting import eventually, wait_until


def test_wait_until_returns_the_first_truthy_value() -> None:
    counter = itertools.count()
    assert wait_until(lambda: [n] if (n := next(counter)) >= 3 else [], 5, "three polls") == [3]


def test_wait_until_fails_naming_what_it_awaited_and_the_last_value() -> None:
    with pytest.raises(AssertionError) as failed:
        wait_until(lambda: 0, 0.05, lambda: "the answer")
    assert "not within 0.05s" in str(failed.value)
    assert ": the answer;" in str(failed.value)
    assert "last value seen: 0" in str(failed.value)


def test_errors_named_as_transient_count_as_not_yet_and_are_reported() -> None:
    calls = itertools.count()

    def flaky() -> bool:
        if next(calls) < 2:
            raise ConnectionError("busy")
        return True

    assert wait_until(flaky, 5, "a flaky answer", ignore=(ConnectionError,))
    with pytest.raises(AssertionError, match=r"last error: ConnectionError\('down'\)"):
        wait_until(lambda: (_ for _ in ()).throw(ConnectionError("down")), 0.05, ignore=(OSError,))
    with pytest.raises(ValueError, match="bug"):  # anything else is a failure at once
        wait_until(lambda: (_ for _ in ()).throw(ValueError("bug")), 5, ignore=(OSError,))


def test_eventually_lets_the_event_loop_run_between_polls() -> None:
    async def main() -> str:
        done = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, done.set)
        return await eventually(lambda: "set" if done.is_set() else "", 5, "the event")

    assert asyncio.run(main()) == "set"
    with pytest.raises(AssertionError, match="nothing coming; last value seen: None"):
        asyncio.run(eventually(lambda: None, 0.05, "nothing coming"))
