"""Each pattern across real processes on the embedded broker, run by ``ferryman run``.

The services live in apps.py; these tests start them as separate processes that share one
broker file, kill or stop them, and check what reached their output files.
"""

from __future__ import annotations

import importlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from ferryman.broker import open_broker
from ferryman.broker.base import Admin

HERE = Path(__file__).parent
CLI = "import sys; from ferryman.cli import main; sys.argv[0] = 'ferryman'; main()"
T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float, what: Callable[[], object]) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s; last seen: {what()}")
        time.sleep(0.05)


class World:
    """One broker directory, the environment pointing at it, and the processes started."""

    def __init__(self, tmp: Path, kafka: str | None) -> None:
        self.tmp = tmp
        self.suffix = uuid.uuid4().hex[:8]
        self.env = {
            **os.environ,
            "FERRYMAN_BROKER": f"kafka://{kafka}" if kafka else f"embedded:{tmp / 'broker.db'}",
            "E2E_SUFFIX": self.suffix,
        }
        if kafka:
            self.env["FERRYMAN_REGISTRY"] = f"embedded:{tmp / 'registry.db'}"
        else:
            self.env.pop("FERRYMAN_REGISTRY", None)  # the default: beside the broker's file
        self.procs: list[subprocess.Popen[str]] = []

    @contextmanager
    def admin(self) -> Iterator[Admin]:
        """An admin client of this world's broker, to look at offsets from outside."""
        broker = open_broker(self.env["FERRYMAN_BROKER"])
        admin = broker.admin()
        try:
            yield admin
        finally:
            admin.close()
            broker.close()

    def run(
        self, *services: str, out: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        return self._start([sys.executable, "-c", CLI, "run", *services], out, env)

    def script(self, *args: str, out: Path) -> subprocess.Popen[str]:
        return self._start([sys.executable, str(HERE / "apps.py"), *args], out)

    def _start(
        self, argv: list[str], out: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            argv,
            cwd=HERE,
            env={**self.env, "E2E_OUT": str(out), **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        return proc

    def apps(self) -> Any:
        """apps.py imported in this process (the fixture points the environment at this world)."""
        sys.path.insert(0, str(HERE))
        try:
            sys.modules.pop("apps", None)
            return importlib.import_module("apps")
        finally:
            sys.path.remove(str(HERE))


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def world(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    kafka = request.getfixturevalue("kafka_bootstrap") if request.param == "kafka" else None
    monkeypatch.setenv("E2E_OUT", os.devnull)
    w = World(tmp_path, kafka)
    for name in ("FERRYMAN_BROKER", "E2E_SUFFIX", "FERRYMAN_REGISTRY"):
        if name in w.env:
            monkeypatch.setenv(name, w.env[name])
        else:
            monkeypatch.delenv(name, raising=False)
    yield w
    for p in w.procs:
        if p.poll() is None:
            p.kill()
        p.communicate()
    sys.modules.pop("apps", None)


def stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM, wait for a clean exit; returns stderr."""
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, f"exit {proc.returncode}: {err[-3000:]}"
    return err


def lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    text = path.read_text()
    return text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]


@pytest.mark.slow
def test_sigkill_in_the_middle_of_20000_events_loses_none_and_keeps_key_order(
    world: World,
) -> None:
    apps = world.apps()
    keys, per_key = 100, 200
    producer = apps.Service(f"e2e-producer-{world.suffix}")
    for seq in range(per_key):
        for k in range(keys):
            producer.emit(apps.ticks, apps.Tick(f"k{k}", seq))
    assert producer.flush(60) == 0
    import asyncio

    asyncio.run(producer.stop())

    out = world.tmp / "ticks.txt"
    first = world.run("apps:ticker", out=out)
    wait_for(lambda: len(lines(out)) >= 2000, 60, lambda: (len(lines(out)), first.poll()))
    first.kill()
    first.communicate()
    at_kill = len(lines(out))
    assert at_kill < keys * per_key, "the consumer finished before the kill: nothing was tested"

    second = world.run("apps:ticker", out=out)
    expected = {(f"k{k}", s) for k in range(keys) for s in range(per_key)}

    def seen() -> set[tuple[str, int]]:
        return {(a, int(b)) for a, b in (line.split(",") for line in lines(out))}

    wait_for(lambda: seen() >= expected, 120, lambda: (len(seen()), len(expected)))
    stop(second)

    by_key: dict[str, list[int]] = {}
    for line in lines(out):
        key, number = line.split(",")
        by_key.setdefault(key, []).append(int(number))
    for key, seqs in by_key.items():
        assert seqs[0] == 0, f"{key} started at {seqs[0]}"
        for a, b in itertools.pairwise(seqs):
            # Either the next one, or a replay of already-seen ones after the crash: never a skip.
            assert b == a + 1 or b <= a, f"{key}: {a} then {b}"
    assert seen() == expected


def test_entities_reach_a_mirror_in_another_process_which_commits_on_sigterm(
    world: World,
) -> None:
    apps = world.apps()
    out = world.tmp / "mirror.jsonl"
    proc = world.run("apps:mirror", "apps:ticker", out=out)  # two services, one process
    owner = apps.Service(f"e2e-owner-{world.suffix}")
    expected: dict[int, str] = {}
    for i in range(30):
        owner.publish(apps.customers, apps.Customer(i, f"c{i}")).result()
        expected[i] = f"c{i}"
    for i in range(10):
        owner.publish(apps.customers, apps.Customer(i, f"renamed{i}")).result()
        expected[i] = f"renamed{i}"
    for i in range(25, 30):
        owner.delete(apps.customers, i).result()
        del expected[i]

    def state() -> dict[int, str]:
        current: dict[int, str] = {}
        for line in lines(out):
            key, name = json.loads(line)
            if name is None:
                current.pop(key, None)
            else:
                current[key] = name
        return current

    wait_for(lambda: state() == expected, 60, state)
    stop(proc)

    with world.admin() as admin:
        ends = {p: o.latest for p, o in admin.offsets(apps.customers.name).items()}
        committed = admin.committed(apps.mirror.group, apps.customers.name)
    assert {tp.partition: off for tp, off in committed.items()} == {
        p: end for p, end in ends.items() if end > 0
    }
    import asyncio

    asyncio.run(owner.stop())


def test_three_requesters_and_two_responders_each_get_their_own_replies(world: World) -> None:
    responders = [world.run("apps:responder", out=world.tmp / f"r{i}.txt") for i in range(2)]
    requesters = [
        world.script("request", "150", str(1000 * i), out=world.tmp / f"q{i}.txt") for i in range(3)
    ]
    reports = []
    for proc in requesters:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr[-3000:]
        reports.append(json.loads(stdout.strip().splitlines()[-1]))
    for r in responders:
        stop(r)
    for report in reports:
        assert report["count"] == 150
        assert report["wrong"] == []
        assert report["late"] == 0


def test_ferryman_run_exits_1_saying_why_when_a_service_stops_on_error(world: World) -> None:
    apps = world.apps()
    proc = world.run("apps:strict", out=world.tmp / "strict.txt")
    producer = apps.Service(f"e2e-poisoner-{world.suffix}")
    producer.emit(apps.poison, apps.Tick("k", 1)).result()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err[-3000:]
    assert "HandlerError" in err
    assert "tick 1 is poison" in err
    import asyncio

    asyncio.run(producer.stop())


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("apps", "module:attribute"),
        ("apps:FAST", "not a ferryman Service"),
        ("nope:x", "cannot import"),
    ],
)
def test_ferryman_run_refuses_what_is_not_a_service(
    world: World, target: str, message: str
) -> None:
    proc = world.run(target, out=world.tmp / "x.txt")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert message in " ".join(err.split())


def test_sigterm_exits_after_shutdown_timeout_when_a_sync_handler_never_returns(
    world: World,
) -> None:
    apps = world.apps()
    out = world.tmp / "held.txt"
    proc = world.run("apps:holder", out=out, env={"E2E_STUCK": "1"})
    producer = apps.Service(f"e2e-holder-producer-{world.suffix}")
    producer.emit(apps.held, apps.Tick("k", 1)).result()
    wait_for(lambda: lines(out) == [f"start,{proc.pid},1"], 60, lambda: (lines(out), proc.poll()))
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)  # shutdown_timeout is 2 s
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"still running a minute after SIGTERM: {err[-3000:]}") from None
    assert proc.returncode == 0, err[-3000:]
    assert "still running after 2s; their records stay uncommitted" in err
    with world.admin() as admin:
        committed = admin.committed(apps.holder.group, apps.held.name)
    assert all(offset == 0 for offset in committed.values()), committed
    import asyncio

    asyncio.run(producer.stop())


def test_a_member_whose_handler_is_stuck_past_max_poll_interval_gives_its_partitions_up(
    world: World,
) -> None:
    apps = world.apps()
    out_a, out_b = world.tmp / "a.txt", world.tmp / "b.txt"
    stuck = world.run("apps:holder", out=out_a, env={"E2E_STUCK": "1", "E2E_CLIENT_ID": "a"})
    producer = apps.Service(f"e2e-holder-producer-{world.suffix}")
    producer.emit(apps.held, apps.Tick("k", 1)).result()
    wait_for(lambda: lines(out_a) == [f"start,{stuck.pid},1"], 60, lambda: lines(out_a))
    # b joins second: it sorts after a, and Kafka's sticky assignment leaves a its partition
    healthy = world.run("apps:holder", out=out_b, env={"E2E_CLIENT_ID": "b"})
    producer.emit(apps.held, apps.Tick("k", 2)).result()
    wanted = [f"{what},{healthy.pid},{seq}" for seq in (1, 2) for what in ("start", "done")]
    wait_for(lambda: lines(out_b) == wanted, 90, lambda: (lines(out_b), healthy.poll()))
    assert stuck.poll() is None, "the stuck member left the group, not its process"
    stop(healthy)
    stuck.kill()
    _, err = stuck.communicate()
    assert "max.poll.interval.ms=6000; leaving the group" in err
    import asyncio

    asyncio.run(producer.stop())
