"""ferryman.testing: test your services on a fresh embedded broker (or Kafka) per test.

Installed with ferryman, the pytest plugin (``ferryman.testing.plugin``, registered through the
``pytest11`` entry point) gives every test the ``ferryman`` fixture, a ``Harness``, with no
import needed; ``ferryman_clock`` installs a ``FakeClock``. The functions here act on the
running test's harness, for code that has no fixture at hand. See docs/testing.md.
"""

from __future__ import annotations

from typing import Any, TypeVar

from ferryman.runtime.message import Message
from ferryman.service.core import Service
from ferryman.testing.active import active
from ferryman.testing.clock import FakeClock
from ferryman.testing.harness import Harness, call, message
from ferryman.testing.matching import ANY, Expected
from ferryman.topics import Topic

T = TypeVar("T")

__all__ = [
    "ANY",
    "FakeClock",
    "Harness",
    "assert_sent",
    "call",
    "drain",
    "message",
    "sent",
]


async def drain(*services: Service, timeout: float = 30.0) -> None:
    """Wait until the services (default: every one started by the test) handled everything."""
    await active().drain(*services, timeout=timeout)


def sent(topic: Topic[T]) -> list[Message[T]]:
    """Every record sent to ``topic`` during the running test, decoded."""
    return active().sent(topic)


def assert_sent(topic: Topic[T], expected: Expected, *, key: Any = ANY) -> Message[T]:
    """The first record sent to ``topic`` matching ``expected``, or an AssertionError that
    shows the closest record sent and how it differs."""
    return active().assert_sent(topic, expected, key=key)
