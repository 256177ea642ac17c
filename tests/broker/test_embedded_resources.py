"""Opening and closing clients and brokers many times leaks no descriptors, threads or clients."""

from __future__ import annotations

import gc
import os
import threading
import weakref
from pathlib import Path

from ferryman.broker.embedded import EmbeddedBroker
from ferryman.records import TopicPartition, TopicSpec


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_two_hundred_clients_come_and_go_without_leaking(tmp_path: Path) -> None:
    broker = EmbeddedBroker(tmp_path / "broker.db", cleaner_interval=None)
    try:
        broker.admin().create_topic(TopicSpec("t", 2))

        def cycle(i: int) -> list[weakref.ref[object]]:
            producer = broker.producer()
            producer.send("t", b"%d" % i, partition=0).result(10)
            producer.close()
            member = broker.consumer("g", config={"session.timeout.ms": "60000"})
            member.subscribe(["t"])
            member.poll(0)
            member.close()
            reader = broker.consumer(None)
            reader.assign([TopicPartition("t", 0)])
            assert reader.poll(10)
            reader.close()
            admin = broker.admin()
            admin.close()
            return [weakref.ref(c) for c in (producer, member, reader, admin)]

        cycle(-1)  # the first cycle opens what stays open for the broker's life
        fds, threads = open_fds(), threading.active_count()
        closed = [ref for i in range(200) for ref in cycle(i)]
        assert open_fds() == fds
        assert threading.active_count() == threads
        broker.admin().close()  # the broker drops closed clients when it makes a new one
        gc.collect()
        held = [ref() for ref in closed if ref() is not None]
        assert not held, f"{len(held)} closed clients are still held, e.g. {held[0]!r}"
    finally:
        broker.close()


def test_brokers_opened_and_closed_leave_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "broker.db"
    EmbeddedBroker(path).close()
    fds, threads = open_fds(), threading.active_count()
    for _ in range(50):
        broker = EmbeddedBroker(path)
        broker.consumer(None).assign([])
        broker.producer()
        broker.close()
    assert open_fds() == fds
    assert threading.active_count() == threads
    assert list((tmp_path / "broker.db-wake").iterdir()) == []
