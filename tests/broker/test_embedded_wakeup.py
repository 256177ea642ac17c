"""Wake-ups: a commit anywhere on the machine wakes the readers waiting on the same file."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import pytest

from ferryman.broker.embedded import EmbeddedBroker
from ferryman.broker.embedded.wakeup import Notifier, Waiter
from ferryman.records import Record, TopicPartition, TopicSpec

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="wake-up sockets use Linux's abstract namespace"
)

PRODUCE_ONE = textwrap.dedent(
    """
    import sys
    from ferryman.broker.embedded import EmbeddedBroker
    broker = EmbeddedBroker(sys.argv[1], cleaner_interval=None)
    broker.producer().send("t", b"from afar").result(30)
    broker.close()
    """
)


def test_a_notification_wakes_every_registered_waiter(tmp_path: Path) -> None:
    first, second = Waiter(tmp_path), Waiter(tmp_path)
    notifier = Notifier(tmp_path)
    try:
        assert len(list(tmp_path.iterdir())) == 2
        assert not first.wait(0.01)
        notifier.notify()
        assert first.wait(5)
        assert second.wait(5)
        assert not first.wait(0.01)  # drained: one wake-up per notification burst
    finally:
        first.close()
        second.close()
        notifier.close()
    assert list(tmp_path.iterdir()) == []


def test_a_dead_readers_registration_is_removed(tmp_path: Path) -> None:
    stale = tmp_path / uuid.uuid4().hex
    stale.touch()
    notifier = Notifier(tmp_path)
    try:
        notifier.notify()
    finally:
        notifier.close()
    assert not stale.exists()


def test_a_consumer_registers_and_unregisters(tmp_path: Path) -> None:
    broker = EmbeddedBroker(tmp_path / "broker.db", cleaner_interval=None)
    wake_dir = tmp_path / "broker.db-wake"
    try:
        consumer = broker.consumer(None)
        assert len(list(wake_dir.iterdir())) == 1
        consumer.close()
        assert list(wake_dir.iterdir()) == []
    finally:
        broker.close()


def test_a_commit_in_another_process_wakes_a_waiting_reader(tmp_path: Path) -> None:
    path = tmp_path / "broker.db"
    broker = EmbeddedBroker(path, cleaner_interval=None)
    try:
        broker.admin().create_topic(TopicSpec("t", 1))
        waiter = Waiter(tmp_path / "broker.db-wake")
        try:
            subprocess.run([sys.executable, "-c", PRODUCE_ONE, str(path)], check=True, timeout=120)
            assert waiter.wait(5)
        finally:
            waiter.close()
    finally:
        broker.close()


def test_a_blocked_poll_returns_a_record_produced_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "broker.db"
    broker = EmbeddedBroker(path, cleaner_interval=None)
    try:
        broker.admin().create_topic(TopicSpec("t", 1))
        consumer = broker.consumer(None)
        consumer.assign([TopicPartition("t", 0)])
        assert consumer.poll(0) == []
        got: list[Record] = []
        reader = threading.Thread(target=lambda: got.extend(consumer.poll(60)))
        reader.start()
        subprocess.run([sys.executable, "-c", PRODUCE_ONE, str(path)], check=True, timeout=120)
        reader.join(90)
        assert [r.value for r in got] == [b"from afar"]
    finally:
        broker.close()
