"""The running test's harness, for the module-level helpers of ferryman.testing."""

from __future__ import annotations

from ferryman.testing.harness import Harness

_active: list[Harness] = []


def active() -> Harness:
    """The harness of the test running now; a clear error outside one."""
    if not _active:
        raise RuntimeError(
            "no ferryman test is running: ask for the `ferryman` fixture in your test (the "
            "plugin comes with ferryman), or make a ferryman.testing.Harness yourself"
        )
    return _active[-1]


def push(harness: Harness) -> None:
    _active.append(harness)


def pop(harness: Harness) -> None:
    if harness in _active:
        _active.remove(harness)
