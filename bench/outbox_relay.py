"""The outbox relay against a hand-written "select batch, produce, delete" loop, and the delay
from commit to publish, on SQLite and PostgreSQL with the embedded broker.

    python bench/outbox_relay.py [--records 20000] [--batch 500] [--rounds 3]
                                 [--latency-records 1000] [--rate 200] [--databases sqlite,postgres]

PostgreSQL comes from FERRYMAN_TEST_POSTGRES (``eval "$(bash scripts/postgres.sh start)"``); each
run uses a schema of its own, dropped afterwards.

Throughput: ``--records`` rows (100-byte values, 1,000 keys, 4 partitions) are written into the
outbox, then drained, once by ``Relay.run_once`` in a loop and once by the bare loop (one
SELECT of the oldest ``--batch`` rows of the whole table, send each, wait for the
acknowledgements, one DELETE); rounds alternate which goes first. Ratio = relay / bare.

Delay: a writer commits one record per transaction at ``--rate`` per second while a Relay runs
in a thread (woken by NOTIFY on PostgreSQL, the in-process event on SQLite); the delay of a
record is from its transaction's commit returning to the broker acknowledging it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, delete, select, text
from sqlalchemy.engine import make_url

from ferryman.broker.embedded import EmbeddedBroker
from ferryman.records import Headers, RecordMetadata, TopicSpec
from ferryman.stores import Database, Outbox, OutboxRecord, Relay
from ferryman.stores.outbox import decode_headers

PARTITIONS = 4


@contextmanager
def database_at(kind: str, workdir: Path) -> Iterator[Database]:
    if kind == "sqlite":
        db = Database(f"sqlite:///{workdir / f'{uuid.uuid4().hex[:6]}.db'}")
        yield db
        db.dispose()
        return
    server = os.environ.get("FERRYMAN_TEST_POSTGRES", "")
    if not server:
        raise SystemExit('set FERRYMAN_TEST_POSTGRES (eval "$(bash scripts/postgres.sh start)")')
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(server).update_query_dict({"options": f"-csearch_path={schema}"})
    db = Database(url)
    try:
        yield db
    finally:
        db.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def fill(outbox: Outbox, topic: str, n: int) -> None:
    value = b"v" * 100
    for start in range(0, n, 1000):
        with outbox.database.begin() as conn:
            outbox.write(
                conn,
                *(
                    OutboxRecord(topic, b"key-%d" % (i % 1000), value, (("id", b"%d" % i),))
                    for i in range(start, min(n, start + 1000))
                ),
            )


def drain_with_relay(database: Database, producer: object, batch: int) -> None:
    relay = Relay(database, producer, batch=batch)  # type: ignore[arg-type]
    while relay.run_once():
        pass
    relay.close()


def drain_bare(database: Database, producer: object, batch: int) -> None:
    """The hand-written loop: oldest rows of the table, send, wait, delete."""
    t = Outbox(database, {}).table
    send = producer.send  # type: ignore[attr-defined]
    while True:
        with database.begin() as conn:
            rows = conn.execute(
                select(
                    t.c.id,
                    t.c.topic,
                    t.c.partition,
                    t.c.key,
                    t.c.value,
                    t.c.headers,
                    t.c.timestamp_ms,
                )
                .order_by(t.c.id)
                .limit(batch)
            ).all()
        if not rows:
            return
        futures = [
            send(topic, value, key=key, headers=decode_headers(h), partition=p, timestamp=ts)
            for _, topic, p, key, value, h, ts in rows
        ]
        for future in futures:
            future.result()
        with database.begin() as conn:
            conn.execute(delete(t).where(t.c.id.in_([r[0] for r in rows])))


def throughput(kind: str, args: argparse.Namespace, workdir: Path) -> tuple[float, float]:
    rates: dict[str, list[float]] = {"relay": [], "bare": []}
    drains: dict[str, Callable[[Database, object, int], None]] = {
        "relay": drain_with_relay,
        "bare": drain_bare,
    }
    broker = EmbeddedBroker(workdir / f"broker-{uuid.uuid4().hex[:6]}.db", cleaner_interval=None)
    producer = broker.producer()
    with database_at(kind, workdir) as database:
        for r in range(args.rounds):
            order = ["relay", "bare"] if r % 2 == 0 else ["bare", "relay"]
            for name in order:
                topic = f"bench.{name}.{uuid.uuid4().hex[:8]}"
                broker.admin().create_topic(TopicSpec(topic, PARTITIONS))
                outbox = Outbox(database, {topic: PARTITIONS})
                database.create_missing()
                fill(outbox, topic, args.records)
                started = time.perf_counter()
                drains[name](database, producer, args.batch)
                rates[name].append(args.records / (time.perf_counter() - started))
    producer.close()
    broker.close()
    return statistics.median(rates["relay"]), statistics.median(rates["bare"])


class Timed:
    """A producer wrapper that notes when each record (by its ``id`` header) was acknowledged."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.acked: dict[bytes, float] = {}

    def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Headers = (),
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> Future[RecordMetadata]:
        future: Future[RecordMetadata] = self.inner.send(  # type: ignore[attr-defined]
            topic, value, key=key, headers=headers, partition=partition, timestamp=timestamp
        )
        ident = dict(headers)["id"]
        future.add_done_callback(lambda _f: self.acked.setdefault(ident, time.perf_counter()))
        return future


def delay(kind: str, args: argparse.Namespace, workdir: Path) -> tuple[float, float]:
    broker = EmbeddedBroker(workdir / f"broker-{uuid.uuid4().hex[:6]}.db", cleaner_interval=None)
    topic = f"bench.delay.{uuid.uuid4().hex[:8]}"
    broker.admin().create_topic(TopicSpec(topic, PARTITIONS))
    inner = broker.producer()
    timed = Timed(inner)
    committed: dict[bytes, float] = {}
    with database_at(kind, workdir) as database:
        outbox = Outbox(database, {topic: PARTITIONS})
        database.create_missing()
        relay = Relay(database, timed)
        stop = threading.Event()
        thread = threading.Thread(target=relay.run, args=(stop,))
        thread.start()
        interval = 1 / args.rate
        next_at = time.perf_counter()
        for i in range(args.latency_records):
            ident = b"%d" % i
            with database.sessions.begin() as session:
                outbox.write(session, OutboxRecord(topic, b"key-%d" % i, b"v", (("id", ident),)))
            committed[ident] = time.perf_counter()
            next_at += interval
            time.sleep(max(0.0, next_at - time.perf_counter()))
        deadline = time.monotonic() + 60
        while len(timed.acked) < len(committed) and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        thread.join()
        relay.close()
    inner.close()
    broker.close()
    delays = sorted((timed.acked[k] - t) * 1000 for k, t in committed.items() if k in timed.acked)
    assert len(delays) == len(committed), f"{len(committed) - len(delays)} never acknowledged"
    return delays[len(delays) // 2], delays[int(len(delays) * 0.99)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-records", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--databases", default="sqlite,postgres")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.databases.split(","):
            relay_rate, bare_rate = throughput(kind, args, Path(tmp))
            p50, p99 = delay(kind, args, Path(tmp))
            print(
                f"{kind:8s} relay {relay_rate:8.0f} msg/s  bare {bare_rate:8.0f} msg/s  "
                f"ratio {relay_rate / bare_rate:4.2f}  commit->publish p50 {p50:6.1f} ms  "
                f"p99 {p99:6.1f} ms"
            )


if __name__ == "__main__":
    main()
