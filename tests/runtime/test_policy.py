"""The failure policy on its own: retries, dead letters, stops, isolation, registry waits."""

from __future__ import annotations

from typing import Any

import pytest

from ferryman.config import ServiceConfig
from ferryman.errors import HandlerError, RecordRejected, RegistryError
from ferryman.records import Polled
from ferryman.runtime.handlers import Outcome
from ferryman.runtime.policy import Abandoned, FailurePolicy, Item

from .conftest import run


class Part:
    """A partition that never waits, and remembers what was marked handled."""

    def __init__(self) -> None:
        self.waits: list[int] = []
        self.done: list[tuple[int, int]] = []

    async def back_off(self, attempt: int) -> None:
        self.waits.append(attempt)

    def handled(self, offset: int, count: int) -> None:
        self.done.append((offset, count))


class Spy:
    def __init__(self, **config: Any) -> None:
        self.dead: list[tuple[int, str, int]] = []
        self.stopped: list[BaseException] = []
        self.part = Part()
        self.policy = FailurePolicy(
            ServiceConfig(**config), "g", self.dead_letter, self.stopped.append
        )

    async def dead_letter(self, record: Polled, exc: BaseException, attempts: int) -> None:
        self.dead.append((record[2], str(exc), attempts))


def items(*values: int) -> list[Item]:
    return [(("t", 0, v, None, None, (), 0), v) for v in values]


def failing_on(bad: set[int], calls: list[list[int]], *, all_or_none: bool) -> Any:
    async def apply(values: list[int]) -> Outcome:
        calls.append(list(values))
        for i, v in enumerate(values):
            if v in bad:
                return (0 if all_or_none else i), ValueError(f"bad {v}")
        return len(values), None

    return apply


def test_a_failing_record_is_retried_then_dead_lettered_and_the_rest_handled() -> None:
    spy = Spy(retries=2)
    calls: list[list[int]] = []
    apply = failing_on({2}, calls, all_or_none=False)
    run(spy.policy.apply(spy.part, "h", apply, items(1, 2, 3), all_or_none=False))
    assert calls == [[1, 2, 3], [2], [2], [3]]
    assert spy.part.waits == [1, 2]
    assert spy.dead == [(2, "bad 2", 3)]
    assert spy.part.done == [(1, 1), (2, 1), (3, 1)]


def test_a_rejected_record_is_not_retried() -> None:
    spy = Spy(retries=5)
    calls: list[list[int]] = []

    async def apply(values: list[int]) -> Outcome:
        calls.append(list(values))
        return 0, RecordRejected("no")

    run(spy.policy.apply(spy.part, "h", apply, items(7), all_or_none=False))
    assert calls == [[7]]
    assert spy.part.waits == []
    assert spy.dead == [(7, "no", 1)]


def test_a_failing_all_or_none_run_is_dead_lettered_whole() -> None:
    spy = Spy(retries=1)
    calls: list[list[int]] = []
    apply = failing_on({2}, calls, all_or_none=True)
    run(spy.policy.apply(spy.part, "h", apply, items(1, 2, 3), all_or_none=True))
    assert calls == [[1, 2, 3], [1, 2, 3]]
    assert [offset for offset, _, _ in spy.dead] == [1, 2, 3]
    assert spy.part.done == [(3, 3)]


def test_isolate_applies_a_failing_run_record_by_record_and_gives_up_only_the_bad_one() -> None:
    """A transactional route (a mirror): the good records of a failing run are applied."""
    spy = Spy(retries=1)
    calls: list[list[int]] = []
    apply = failing_on({2}, calls, all_or_none=True)
    run(spy.policy.apply(spy.part, "h", apply, items(1, 2, 3), all_or_none=True, isolate=True))
    assert calls == [[1, 2, 3], [1, 2, 3], [1], [2], [2], [3]]
    assert spy.dead == [(2, "bad 2", 2)]
    assert spy.part.done == [(1, 1), (2, 1), (3, 1)]


def test_on_error_stop_stops_with_a_handler_error_and_leaves_the_record() -> None:
    spy = Spy(retries=0, on_error="stop")
    calls: list[list[int]] = []
    apply = failing_on({1}, calls, all_or_none=False)
    with pytest.raises(Abandoned):
        run(spy.policy.apply(spy.part, "h", apply, items(1, 2), all_or_none=False))
    assert isinstance(spy.stopped[0], HandlerError)
    assert "t[0] offset 1 after 1 attempt(s)" in str(spy.stopped[0])
    assert spy.dead == []
    assert spy.part.done == []


def test_the_registry_is_waited_for_until_it_answers() -> None:
    spy, answers = Spy(retries=0), [RegistryError("down"), RegistryError("down"), "value"]

    async def fetch() -> Any:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    record = items(5)[0][0]
    got = run(spy.policy.wait_for_registry(spy.part, record, fetch, RegistryError("down")))
    assert got == "value"
    assert spy.part.waits == [1, 2, 3]
    assert spy.policy.registry_retries == 3
    assert spy.stopped == []
    assert spy.dead == []


def test_registry_retries_bounds_the_wait_and_stops_with_a_registry_error() -> None:
    spy = Spy(retries=9, registry_retries=2)

    async def fetch() -> Any:
        raise RegistryError("down")

    record = items(5)[0][0]
    with pytest.raises(Abandoned):
        run(spy.policy.wait_for_registry(spy.part, record, fetch, RegistryError("down")))
    assert spy.part.waits == [1, 2]
    assert isinstance(spy.stopped[0], RegistryError)
    assert "registry_retries" in str(spy.stopped[0])
    assert spy.dead == []
