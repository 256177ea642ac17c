"""Fixtures shared by the embedded broker's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ferryman.broker.embedded import EmbeddedBroker
from ferryman.records import TopicSpec


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker with topic ``t`` of 4 partitions, no background cleaner. Test modules that
    need another start define their own ``broker``."""
    b = EmbeddedBroker(tmp_path / "broker.db", cleaner_interval=None)
    b.admin().create_topic(TopicSpec("t", 4))
    yield b
    b.close()
