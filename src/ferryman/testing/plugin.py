"""The pytest plugin (entry point ``pytest11``: ``ferryman``): fixtures, and async tests.

``ferryman``: a Harness on a fresh embedded broker and registry in the test's ``tmp_path``
(``FERRYMAN_BROKER``/``_REGISTRY`` point there during the test), or on the Kafka named by
``FERRYMAN_BROKER=kafka://...``. ``ferryman_clock``: a FakeClock installed for the test.
An ``async def`` test runs on a fresh event loop (``asyncio.run``), unless another plugin
(pytest-asyncio, anyio, trio) claims it by its marker.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # imported when a test asks for a fixture: pytest starts without ferryman
    from ferryman.testing.clock import FakeClock
    from ferryman.testing.harness import Harness

_OTHER_RUNNERS = ("asyncio", "anyio", "trio")


@pytest.fixture
def ferryman(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    """This test's broker, registry and services, and the records sent to them."""
    from ferryman.testing.active import pop, push
    from ferryman.testing.harness import ENV, Harness

    harness = Harness(tmp_path / "ferryman")
    for var in ENV:
        monkeypatch.delenv(var, raising=False)
    for var, value in harness.environment.items():
        monkeypatch.setenv(var, value)
    push(harness)
    try:
        yield harness
    finally:
        pop(harness)
        harness.close()


@pytest.fixture
def ferryman_clock() -> Iterator[FakeClock]:
    """A FakeClock that paces retry back-offs and republish cadences during this test."""
    from ferryman.testing.clock import FakeClock

    with FakeClock() as clock:
        yield clock


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    fn = pyfuncitem.obj
    if not inspect.iscoroutinefunction(fn):
        return None
    if any(pyfuncitem.get_closest_marker(m) for m in _OTHER_RUNNERS):
        return None
    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    asyncio.run(fn(**args))
    return True


def pytest_configure(config: pytest.Config) -> None:
    # the contract suite's marker, for projects that run it (ferryman.testing.contract)
    config.addinivalue_line(
        "markers", "kafka: needs Apache Kafka (FERRYMAN_TEST_KAFKA); skipped without it"
    )
