"""Joins in processes (``ferryman run join_apps:catalog``) that are SIGKILLed, or run twice:
the enriched topic, read back and compacted, equals the join of the sources' final states, and
each key's records go out in the order of its writes. On the embedded broker with SQLite and
PostgreSQL, and on Kafka with SQLite (the ``world`` of test_mirror_processes)."""

from __future__ import annotations

import asyncio
import importlib
import random
import subprocess
import sys
import threading
import time
from functools import partial
from typing import Any

import pytest
from tests.e2e.test_mirror_processes import CLI, HERE, World, kill, wait_for, world

from ferryman.records import TopicPartition
from ferryman.service import Service

__all__ = ["world"]  # the fixture, imported for the tests below


def join_apps() -> Any:
    """join_apps imported here (the fixture points the environment at the world)."""
    sys.path.insert(0, str(HERE))
    try:
        sys.modules.pop("join_apps", None)
        return importlib.import_module("join_apps")
    finally:
        sys.path.remove(str(HERE))


class Sources(threading.Thread):
    """Publishes ``count`` random changes to products and category assignments (10% tombstones)
    over ``keys`` products, in runs of 500 ``pace`` seconds apart, keeping the final states. A
    product's price is the change's number, so its joined records must show rising prices."""

    def __init__(self, apps: Any, count: int, keys: int, pace: float) -> None:
        super().__init__(daemon=True)
        self.apps, self.count, self.keys, self.pace = apps, count, keys, pace
        self.products: dict[int, Any] = {}
        self.categories: dict[int, str] = {}
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        apps = self.apps
        svc = Service(f"e2e-sources-{apps.SUFFIX}")
        rng = random.Random(13)
        try:
            for i in range(self.count):
                pid = rng.randrange(self.keys)
                tombstone = rng.random() < 0.1
                if rng.random() < 0.6:
                    if tombstone:
                        svc.delete(apps.products, key=pid)
                        self.products.pop(pid, None)
                    else:
                        self.products[pid] = apps.Product(pid, f"p{pid}", i)
                        svc.publish(apps.products, self.products[pid])
                elif tombstone:
                    svc.delete(apps.assignments, key=f"a{pid}")
                    self.categories.pop(pid, None)
                else:
                    self.categories[pid] = rng.choice(["books", "tools", "toys"])
                    assignment = apps.Assignment(f"a{pid}", pid, self.categories[pid])
                    svc.publish(apps.assignments, assignment)
                if i % 500 == 499:
                    assert svc.flush(60) == 0
                    self.sent = i + 1
                    time.sleep(self.pace)
            assert svc.flush(60) == 0
            self.sent = self.count
        except BaseException as exc:
            self.error = exc
        finally:
            asyncio.run(svc.stop())

    def expected(self) -> dict[int, Any]:
        return {
            pid: self.apps.Enriched(p.id, p.name, p.price, self.categories.get(pid))
            for pid, p in self.products.items()
        }


class Output:
    """The enriched topic as read so far: every record per key in offset order."""

    def __init__(self, apps: Any) -> None:
        self.apps = apps
        self.svc = Service(f"e2e-reader-{apps.SUFFIX}")
        self.by_key: dict[Any, list[Any]] = {}
        self.reader: Any = None

    def read(self) -> dict[Any, Any]:
        """Read what arrived since; returns the compacted state (tombstones drop the key)."""
        conn = self.svc._conn
        topic = self.apps.enriched
        if self.reader is None:
            if topic.name not in conn.admin.list_topics():
                return {}
            self.reader = conn.broker.consumer(None)
            partitions = conn.admin.offsets(topic.name)
            self.reader.assign([TopicPartition(topic.name, p) for p in partitions])
        while rows := self.reader.poll(0.2, 5000).rows:
            for row in rows:
                message = conn.serde.decode(topic, row)
                self.by_key.setdefault(message.key, []).append(message.value)
        return {k: v[-1] for k, v in self.by_key.items() if v[-1] is not None}

    def records(self) -> int:
        """Records read so far, after reading what arrived."""
        self.read()
        return sum(len(v) for v in self.by_key.values())

    def out_of_order(self) -> list[Any]:
        """Keys whose published prices went down: a record overtaken by an older one."""
        bad = []
        for key, values in self.by_key.items():
            prices = [v.price for v in values if v is not None]
            if prices != sorted(prices):
                bad.append(key)
        return bad

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
        asyncio.run(self.svc.stop())


def exact(world: World, sources: Sources, output: Output) -> None:
    """Wait until the compacted output equals the join of the sources' final states."""
    sources.join(300)
    assert sources.error is None, sources.error
    expected = sources.expected()
    wait_for(
        lambda: output.read() == expected,
        120,
        lambda: f"{len(output.read())} keys joined of {len(expected)} expected",
    )
    assert output.out_of_order() == []


def sent_past(sources: Sources, mark: int) -> bool:
    return sources.sent >= mark


def flowing(output: Output, seen: int, sources: Sources) -> bool:
    """New output since ``seen`` records, or the sources are done (nothing more may come)."""
    return output.records() > seen or sources.sent >= sources.count


@pytest.mark.slow
def test_the_republishing_process_sigkilled_five_times_the_joined_state_is_exact(
    world: World,
) -> None:
    apps = join_apps()
    proc = world.run("join_apps:catalog")
    sources = Sources(apps, 6_000, keys=400, pace=1.0)  # 12 runs: a stream of 12 s at least
    output = Output(apps)
    try:
        sources.start()
        for kill_number in range(1, 6):
            # Spread the kills over the stream, each once output flows again after a restart.
            wait_for(partial(sent_past, sources, kill_number * 1_000), 120, lambda: sources.sent)
            wait_for(partial(flowing, output, output.records(), sources), 120, lambda: "flowing")
            kill(proc)
            proc = world.run("join_apps:catalog")
        exact(world, sources, output)
        assert proc.poll() is None
    finally:
        output.close()


def test_two_republishing_instances_publish_each_key_in_order_and_exactly(world: World) -> None:
    apps = join_apps()
    first = world.run("join_apps:catalog")
    second = world.run("join_apps:catalog")
    sources = Sources(apps, 4_000, keys=300, pace=0.2)
    output = Output(apps)
    try:
        sources.start()
        exact(world, sources, output)
        assert first.poll() is None
        assert second.poll() is None
    finally:
        output.close()


def test_ferryman_republish_backfills_a_joined_source_with_a_progress_bar(world: World) -> None:
    apps = join_apps()
    proc = world.run("join_apps:catalog")
    sources = Sources(apps, 500, keys=40, pace=0.0)
    output = Output(apps)
    try:
        sources.start()
        exact(world, sources, output)
        kill(proc)
        before = output.records()
        # every row with id < 10, a tombstone for those without their owner part
        wanted = len([k for k in world.table("product_view") if k < 10])
        republish = subprocess.run(
            [
                *(sys.executable, "-c", CLI, "republish", "join_apps:catalog"),
                *(apps.enriched.name, "--where", "id < 10", "--rate", "1000"),
            ],
            cwd=HERE,
            env=world.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert republish.returncode == 0, republish.stderr[-3000:]
        assert f"{wanted} rows of {apps.enriched.name!r} published" in republish.stderr
        wait_for(lambda: output.records() == before + wanted, 30, output.records)
        assert output.read() == sources.expected()
    finally:
        output.close()
