"""Mirrors and transactional handlers in processes that are SIGKILLed: effectively once.

A producer publishes updates and tombstones while ``ferryman run mirror_apps:copy
mirror_apps:counter`` is killed and restarted; at the end the mirror table equals the topic's
final state exactly and the transactional handler has counted every record exactly once. Runs on
{embedded broker, Kafka} x {SQLite, PostgreSQL}.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine, make_url

from ferryman.service import Service

HERE = Path(__file__).parent
CLI = "import sys; from ferryman.cli import main; sys.argv[0] = 'ferryman'; main()"
T = TypeVar("T")


class World:
    """A broker, a registry and a database for the processes, and the processes started."""

    def __init__(self, tmp: Path, broker: str, database: str) -> None:
        self.suffix = uuid.uuid4().hex[:8]
        self.env = {
            **os.environ,
            "FERRYMAN_BROKER": broker,
            "FERRYMAN_REGISTRY": f"embedded:{tmp / 'registry.db'}",
            "FERRYMAN_DATABASE": database,
            "E2E_SUFFIX": self.suffix,
        }
        self.procs: list[subprocess.Popen[str]] = []
        self.engine: Engine = create_engine(database)

    def run(self, *services: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", CLI, "run", *services],
            cwd=HERE,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        return proc

    def apps(self) -> Any:
        """mirror_apps imported here (the fixture points the environment at this world)."""
        sys.path.insert(0, str(HERE))
        try:
            sys.modules.pop("mirror_apps", None)
            return importlib.import_module("mirror_apps")
        finally:
            sys.path.remove(str(HERE))

    def table(self, name: str) -> dict[int, tuple[Any, ...]]:
        """The rows of table ``name`` by key (none before the service created it)."""
        if not inspect(self.engine).has_table(name):
            return {}
        with self.engine.connect() as conn:
            return {r[0]: tuple(r[1:]) for r in conn.execute(text(f"SELECT * FROM {name}"))}


@pytest.fixture(
    params=[
        "embedded-sqlite",
        pytest.param("embedded-postgres", marks=pytest.mark.postgres),
        pytest.param("kafka-sqlite", marks=pytest.mark.kafka),
        pytest.param("kafka-postgres", marks=[pytest.mark.kafka, pytest.mark.postgres]),
    ]
)
def world(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    broker_kind, database_kind = request.param.split("-")
    if broker_kind == "kafka":
        broker = f"kafka://{request.getfixturevalue('kafka_bootstrap')}"
    else:
        broker = f"embedded:{tmp_path / 'broker.db'}"
    schema = None
    if database_kind == "postgres":
        admin: Engine = request.getfixturevalue("postgres_admin")
        schema = f"test_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(request.getfixturevalue("postgres_url"))
        database = url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    else:
        database = f"sqlite:///{tmp_path / 'db' / 'services.db'}"
    w = World(tmp_path, broker, database)
    for name in ("FERRYMAN_BROKER", "FERRYMAN_REGISTRY", "FERRYMAN_DATABASE", "E2E_SUFFIX"):
        monkeypatch.setenv(name, w.env[name])
    yield w
    for p in w.procs:
        if p.poll() is None:
            p.kill()
        p.communicate()
    sys.modules.pop("mirror_apps", None)
    w.engine.dispose()
    if schema is not None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


def wait_for(check: Callable[[], T], timeout: float, what: Callable[[], object]) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s; last seen: {what()}")
        time.sleep(0.1)


class Producer(threading.Thread):
    """Publishes ``count`` changes over ``keys`` keys (``tombstones`` of them deletes) from a
    thread, keeping the final state; ``sent`` counts the acknowledged ones."""

    def __init__(
        self,
        apps: Any,
        count: int,
        keys: int,
        tombstones: float,
        pace: float = 0.0,
        hold_at: int | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.apps, self.count, self.keys, self.tombstones = apps, count, keys, tombstones
        self.pace = pace  # seconds between runs of 500, so a stream lasts while processes die
        # Stop after ``hold_at`` acknowledged records until ``go`` is set: the stream is still
        # flowing when a test kills a process, however slow the machine.
        self.hold_at = hold_at
        self.go = threading.Event()
        self.state: dict[int, tuple[str, int]] = {}
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        svc = Service(f"e2e-owner-{self.apps.SUFFIX}")
        rng = random.Random(12)
        try:
            for i in range(self.count):
                key = rng.randrange(self.keys)
                if rng.random() < self.tombstones:
                    svc.delete(self.apps.accounts, key=key)
                    self.state.pop(key, None)
                else:
                    svc.publish(self.apps.accounts, self.apps.Account(key, f"o{i}", i))
                    self.state[key] = (f"o{i}", i)
                if i % 500 == 499:
                    assert svc.flush(60) == 0
                    self.sent = i + 1
                    if self.sent == self.hold_at:
                        assert self.go.wait(300), "the test never let the producer go on"
                    time.sleep(self.pace)
            assert svc.flush(60) == 0
            self.sent = self.count
        except BaseException as exc:
            self.error = exc
        finally:
            asyncio.run(svc.stop())  # closes the producer


def counted(world: World) -> int:
    with world.engine.connect() as conn:
        got = conn.execute(text("SELECT records FROM record_counts WHERE id = 1")).scalar()
    return int(got or 0)


def counted_at_least(world: World, mark: int) -> bool:
    return counted(world) >= mark


def alive(*procs: subprocess.Popen[str]) -> bool:
    """True, or an AssertionError with the stderr of a process that has exited."""
    for proc in procs:
        if proc.poll() is not None:
            _, err = proc.communicate(timeout=30)
            raise AssertionError(f"an instance exited with {proc.returncode}:\n{err[-3000:]}")
    return True


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)


@pytest.mark.slow
def test_sigkilled_five_times_the_mirror_is_exact_and_the_count_is_exactly_once(
    world: World,
) -> None:
    apps = world.apps()
    apps.create_counts()
    total = 50_000
    proc = world.run("mirror_apps:copy", "mirror_apps:counter")
    producer = Producer(apps, total, keys=5_000, tombstones=0.10)
    producer.start()
    for kill_number in range(1, 6):
        # Spread the kills over the stream: each once the counter passed the next mark.
        mark = kill_number * total // 7
        wait_for(
            functools.partial(counted_at_least, world, mark),
            180,
            lambda: (counted(world), producer.sent),
        )
        kill(proc)
        proc = world.run("mirror_apps:copy", "mirror_apps:counter")
    producer.join(300)
    assert producer.error is None, producer.error
    name = apps.accounts.name.replace(".", "_")
    wait_for(lambda: world.table(name) == producer.state, 300, lambda: len(world.table(name)))
    # A record counted twice would overshoot, and the wait would end in failure.
    wait_for(lambda: counted(world) == total, 120, lambda: counted(world))
    assert proc.poll() is None


def test_two_instances_one_killed_mid_stream_the_table_is_still_exact(world: World) -> None:
    # Both instances create the missing tables as they start: on PostgreSQL that once failed
    # one of them (a unique violation in the catalog), and the table stopped at what the
    # killed one had applied. Database.create_missing takes turns now; an instance that dies
    # anyway fails the test with its stderr.
    apps = world.apps()
    first = world.run("mirror_apps:copy")
    second = world.run("mirror_apps:copy")
    producer = Producer(apps, 6_000, keys=600, tombstones=0.10, pace=0.5, hold_at=2_000)
    producer.start()
    name = apps.accounts.name.replace(".", "_")
    wait_for(lambda: len(world.table(name)) > 0, 120, lambda: producer.sent)
    wait_for(lambda: producer.sent >= 2_000, 120, lambda: producer.sent)
    alive(first, second)
    kill(first)
    producer.go.set()  # the other 4,000 records come while only the second instance lives
    producer.join(300)
    assert producer.error is None, producer.error
    wait_for(
        lambda: world.table(name) == producer.state,
        180,
        lambda: (len(world.table(name)), alive(second)),
    )
    alive(second)
