"""The outbox relay in real processes: ``ferryman relay`` alone, and ``ferryman run`` of a service
whose relay is SIGKILLed mid-stream and restarted: every committed row published (0 lost), in
order per key; duplicates are allowed (at-least-once) and reported."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import func, insert, select

from ferryman.broker import open_broker
from ferryman.records import Record, TopicPartition
from ferryman.runtime.headers import MESSAGE_ID
from ferryman.stores import Database
from ferryman.stores.outbox import outbox_table

HERE = Path(__file__).parent
CLI = "import sys; from ferryman.cli import main; sys.argv[0] = 'ferryman'; main()"
T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float, what: Callable[[], object]) -> T:
    import time

    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s; last seen: {what()}")
        time.sleep(0.05)


@dataclass
class World:
    """A broker, registry and database of this test, the environment naming them, processes."""

    env: dict[str, str]
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def start(self, *argv: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", CLI, *argv],
            cwd=HERE,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        return proc

    def apps(self) -> Any:
        """outbox_apps imported here: its services write the same outbox as the processes'."""
        sys.path.insert(0, str(HERE))
        try:
            sys.modules.pop("outbox_apps", None)
            return importlib.import_module("outbox_apps")
        finally:
            sys.path.remove(str(HERE))

    def records(self, topic: str) -> list[Record]:
        """Every record of ``topic`` now, in offset order per partition."""
        broker = open_broker(self.env["FERRYMAN_BROKER"])
        try:
            partitions = len(broker.admin().offsets(topic))
            reader = broker.consumer(None)
            reader.assign([TopicPartition(topic, p) for p in range(partitions)])
            got: list[Record] = []
            while batch := reader.poll(0.2):
                got.extend(batch)
            reader.close()
            return got
        finally:
            broker.close()

    def published(self, topic: str) -> int:
        """Records on ``topic`` now (0 before it exists)."""
        broker = open_broker(self.env["FERRYMAN_BROKER"])
        try:
            admin = broker.admin()
            if topic not in admin.list_topics():
                return 0
            return sum(o.latest - o.earliest for o in admin.offsets(topic).values())
        finally:
            broker.close()

    def outbox_rows(self) -> int:
        db = Database(self.env["FERRYMAN_DATABASE"])
        try:
            with db.begin() as conn:
                table = outbox_table(db.metadata)
                return int(conn.scalar(select(func.count()).select_from(table)) or 0)
        finally:
            db.dispose()


@pytest.fixture
def world(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    env = {
        **os.environ,
        "FERRYMAN_BROKER": f"embedded:{tmp_path / 'broker.db'}",
        "FERRYMAN_REGISTRY": f"embedded:{tmp_path / 'registry.db'}",
        "FERRYMAN_DATABASE": database_url,
        "E2E_SUFFIX": uuid.uuid4().hex[:8],
    }
    for name in ("FERRYMAN_BROKER", "FERRYMAN_REGISTRY", "FERRYMAN_DATABASE", "E2E_SUFFIX"):
        monkeypatch.setenv(name, env[name])
    w = World(env)
    yield w
    for p in w.procs:
        if p.poll() is None:
            p.kill()
        p.communicate()
    sys.modules.pop("outbox_apps", None)


def write(apps: Any, first: int, count: int, per: int = 50) -> None:
    """``count`` events into the outbox, ``per`` a transaction, keys k0..k6 in turn."""
    svc = apps.quiet
    db = Database(svc.locations.database)
    try:
        for start in range(first, first + count, per):
            with db.sessions.begin() as session:
                box = svc.outbox(session)
                for seq in range(start, min(start + per, first + count)):
                    box.emit(apps.steps, apps.Step(f"k{seq % 7}", seq))
    finally:
        db.dispose()


def stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM, wait for a clean exit; returns stderr."""
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, f"exit {proc.returncode}: {err[-3000:]}"
    return err


def test_ferryman_relay_publishes_a_services_outbox_and_stops_on_sigterm(world: World) -> None:
    apps = world.apps()
    write(apps, 0, 100)
    relay = world.start("relay", "outbox_apps:quiet")
    topic = apps.steps.name
    wait_for(lambda: world.outbox_rows() == 0, 60, world.outbox_rows)
    err = stop(relay)
    assert "ferryman relay: service" in err
    records = world.records(topic)
    assert len({dict(r.headers)[MESSAGE_ID] for r in records}) == 100


def test_relay_not_a_service_is_one_line(world: World) -> None:
    proc = world.start("relay", "outbox_apps:SUFFIX")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert err.strip() == "ferryman relay: 'outbox_apps:SUFFIX' is a str, not a ferryman Service"


def test_sigkill_of_a_services_relay_mid_stream_loses_nothing(world: World) -> None:
    apps = world.apps()
    decode = apps.quiet  # decodes what the processes published
    topic = apps.steps.name
    enough = threading.Event()
    written: list[int] = []

    def keep_writing() -> None:  # 10 a transaction until told to stop: before, during, after
        while not enough.is_set() or len(written) < 2000:
            write(apps, len(written), 10, 10)
            written.extend(range(10))

    writer = threading.Thread(target=keep_writing)
    service = world.start("run", "outbox_apps:writer")
    writer.start()
    try:
        wait_for(lambda: world.published(topic) > 500, 60, lambda: world.published(topic))
        service.kill()  # mid-stream: rows relayed, rows not yet, maybe rows sent and not deleted
        service.communicate()
        at_kill = len(written)
        service = world.start("run", "outbox_apps:writer")
        wait_for(lambda: len(written) > at_kill + 500, 60, lambda: len(written))
    finally:
        enough.set()
        writer.join()
    total = len(written)
    wait_for(lambda: world.outbox_rows() == 0, 120, world.outbox_rows)
    stop(service)

    records = world.records(topic)
    serde = decode._conn.serde
    seqs_by_key: dict[str, list[int]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        step = serde.decode_value(apps.steps, r)
        seqs_by_key[step.key].append(step.seq)
    seen = Counter(seq for seqs in seqs_by_key.values() for seq in seqs)
    assert set(seen) == set(range(total)), f"lost: {sorted(set(range(total)) - set(seen))[:20]}"
    duplicates = sum(n - 1 for n in seen.values())
    print(
        f"relay SIGKILLed mid-stream: {total} committed ({at_kill} before the kill), 0 lost, {duplicates} duplicates"
    )
    for key, seqs in seqs_by_key.items():
        firsts = list(dict.fromkeys(seqs))  # a resent record repeats; its first sight is in order
        assert firsts == sorted(firsts), f"key {key}: out of commit order"
    decode._conn.close()


def test_ferryman_republish_backfills_a_sources_table_into_the_outbox(world: World) -> None:
    apps = world.apps()
    db = Database(world.env["FERRYMAN_DATABASE"])
    try:
        apps.Base.metadata.create_all(db.engine)
        with db.begin() as conn:  # a bulk insert: no session event publishes it
            conn.execute(insert(apps.ItemRow), [{"id": i, "name": f"i{i}"} for i in range(3)])
    finally:
        db.dispose()
    proc = world.start("republish", "outbox_apps:sourced", apps.items.name)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    assert f"3 rows of {apps.items.name!r} written to the outbox" in err
    assert world.outbox_rows() == 3
    proc = world.start("republish", "outbox_apps:sourced", "nope")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "has no source for 'nope'" in err
