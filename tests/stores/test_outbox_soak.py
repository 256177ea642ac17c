"""The outbox soak of issue 14: writer processes commit and roll back while relay processes are
SIGKILLed; every committed record is published, none rolled back is, per-key order is commit
order, and duplicates (from relays killed between send and delete) are counted.

Run as a script, this file is the writer or the relay process (``writer``/``relay`` argument).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

from ferryman.broker import open_broker
from ferryman.broker.base import Broker
from ferryman.records import TopicPartition, TopicSpec
from ferryman.stores import Database, Outbox, OutboxRecord, Relay

WRITERS = 8
TRANSACTIONS = int(os.environ.get("FERRYMAN_SOAK_TRANSACTIONS", "2000"))
ROLLBACK_SHARE = 0.2
RELAYS = 2
KILLS = 5
PARTITIONS = 4
TOPIC = "soak.orders"


class Rollback(Exception):
    """The writer's chosen failure: its transaction rolls back."""


def writer(url: str, number: int, out: str, topic: str) -> None:
    """Commit TRANSACTIONS transactions, a fifth of them rolled back; record what committed."""
    database = Database(url)
    outbox = Outbox(database, {topic: PARTITIONS})
    rng = random.Random(number)
    committed: list[str] = []
    for i in range(TRANSACTIONS):
        ident = f"{number}:{i}"
        key = f"w{number}-k{i % 3}".encode()
        try:
            with database.begin() as conn:
                outbox.write(conn, OutboxRecord(topic, key, ident.encode(), (("id", b"x"),)))
                if rng.random() < ROLLBACK_SHARE:
                    raise Rollback
        except Rollback:
            continue
        committed.append(ident)
    Path(out).write_text(json.dumps(committed))
    database.dispose()


def relay(url: str, broker_url: str) -> None:
    """Relay until killed."""
    database = Database(url)
    producer = open_broker(broker_url).producer()
    Relay(database, producer, batch=200, lease_seconds=1.0, poll_interval=0.02).run(
        threading.Event()
    )


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def soak_broker_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the relays publish: an embedded file, or the test Kafka (CI runs both)."""
    if request.param == "kafka":
        bootstrap: str = request.getfixturevalue("kafka_bootstrap")
        return f"kafka://{bootstrap}"
    return f"embedded:{tmp_path / 'broker.db'}"


@pytest.mark.slow
def test_writers_and_killed_relays_lose_nothing_and_invent_nothing(
    database_url: str,
    soak_broker_url: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    record_property: Callable[[str, object], None],
) -> None:
    topic = f"{TOPIC}.{uuid.uuid4().hex[:8]}"  # fresh on a shared Kafka
    broker = open_broker(soak_broker_url)
    request.addfinalizer(broker.close)  # closed on failure too: a leaked socket warns later
    broker.admin().create_topic(TopicSpec(topic, PARTITIONS))
    database = Database(database_url)
    Outbox(database, {topic: PARTITIONS})
    database.create_missing()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    me = str(Path(__file__).resolve())

    def start(*args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, me, *args], env=env)

    relays = [start("relay", database_url, soak_broker_url) for _ in range(RELAYS)]
    outs = [str(tmp_path / f"writer{n}.json") for n in range(WRITERS)]
    writers = [start("writer", database_url, str(n), outs[n], topic) for n in range(WRITERS)]
    kills = 0
    try:
        while kills < KILLS or any(w.poll() is None for w in writers):
            time.sleep(1.0 if kills < KILLS else 0.2)  # pacing the kills, not waiting on a result
            if kills < KILLS:
                victim = random.randrange(RELAYS)
                relays[victim].send_signal(signal.SIGKILL)
                relays[victim].wait()
                relays[victim] = start("relay", database_url, soak_broker_url)
                kills += 1
        assert all(w.returncode == 0 for w in writers), "a writer failed"
        remaining = _wait_for_empty_outbox(database)
        assert remaining == 0, f"{remaining} outbox rows were never relayed"
    finally:
        for p in relays + writers:
            if p.poll() is None:
                p.kill()
                p.wait()
        database.dispose()

    committed = [ident for out in outs for ident in json.loads(Path(out).read_text())]
    published, per_key = _read(broker, topic)
    counts = Counter(published)
    lost = set(committed) - set(counts)
    phantom = set(counts) - set(committed)
    duplicates = sum(n - 1 for n in counts.values())
    record_property("outbox_soak", {"committed": len(committed), "duplicates": duplicates})
    print(f"soak: {len(committed)} committed, {duplicates} duplicates, {kills} relay kills")
    assert not lost, f"{len(lost)} committed records never published, e.g. {sorted(lost)[:5]}"
    assert not phantom, f"{len(phantom)} rolled-back records published: {sorted(phantom)[:5]}"
    for key, seqs in per_key.items():
        first_seen = list(dict.fromkeys(seqs))
        assert first_seen == sorted(first_seen), f"key {key} published out of commit order"


def _wait_for_empty_outbox(database: Database, timeout: float = 60.0) -> int:
    from sqlalchemy import func, select

    table = Outbox(database, {}).table
    deadline = time.monotonic() + timeout
    while True:
        with database.begin() as conn:
            left = int(conn.scalar(select(func.count()).select_from(table)) or 0)
        if left == 0 or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def _read(broker: Broker, topic: str) -> tuple[list[str], dict[str, list[int]]]:
    offsets = broker.admin().offsets(topic)
    ends = {p: o.latest for p, o in offsets.items()}
    reader = broker.consumer(None)
    reader.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
    for p, o in offsets.items():
        reader.seek(TopicPartition(topic, p), o.earliest)
    published: list[str] = []
    per_key: dict[str, list[int]] = defaultdict(list)
    deadline = time.monotonic() + 60
    while any(reader.position(TopicPartition(topic, p)) < end for p, end in ends.items()):
        assert time.monotonic() < deadline, "reading the topic back timed out"
        for record in reader.poll(0.1, 5000):
            ident = (record.value or b"").decode()
            published.append(ident)
            per_key[(record.key or b"").decode()].append(int(ident.split(":")[1]))
    reader.close()
    return published, per_key


if __name__ == "__main__":
    if sys.argv[1] == "writer":
        writer(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
    else:
        relay(sys.argv[2], sys.argv[3])
