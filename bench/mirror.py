"""Mirror rows/s end to end (broker to committed table) against a hand-written mirror; and a
transactional handler's records/s against a plain handler.

Run: ``python bench/mirror.py`` (embedded broker and SQLite in a temp dir), ``--broker
kafka://127.0.0.1:9092``, ``--database postgresql+psycopg://...``; ``--updates N --keys K``.

Both mirrors read the same N updates (10% tombstones) of K keys from the same entity topic, each
in a fresh consumer group and a fresh table, timed from subscribe to the last offset committed
in the database (for the mirror: to its last record counted as handled, which it is once its
transaction committed; the offsets stored are checked after):

- hand-written: one thread; ``consumer.poll``; fastavro decode of key and value (5-byte header
  skipped, schemas parsed once); last change per key within the poll; one transaction per poll
  with an ``executemany`` upsert, an ``executemany`` delete, and the offsets upserted;
- mirror: ``svc.mirror(topic)``: the runtime's poll thread, per-partition workers, decoding to
  the model, Mirror.apply per partition run (offset check, compaction, rows as tuples upserted
  through the driver's ``executemany`` with a statement compiled once, a delete, the offsets).

Note that the hand-written mirror runs its statements through SQLAlchemy ``text()`` (Core's
per-row parameter processing included), as a user of SQLAlchemy would write it.

Then N events through ``@svc.on(topic)`` with a sync handler that does nothing, plain and with a
``session`` parameter (one transaction per run of up to 500 records, offsets stored with it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import random
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.orm import Session

from ferryman.broker import open_broker
from ferryman.config import ServiceConfig
from ferryman.records import TopicPartition
from ferryman.schema import open_registry
from ferryman.service import Service
from ferryman.stores import OFFSETS_TABLE
from ferryman.topics import EntityTopic, EventTopic


@dataclass
class Account:
    id: int
    owner: str
    balance: int
    note: str


@dataclass
class Tick:
    n: int


def produce(broker: str, registry: str, topic: EntityTopic[Account], n: int, keys: int) -> None:
    svc = Service("bench-producer", broker=broker, registry=registry)
    rng = random.Random(7)
    for i in range(n):
        key = rng.randrange(keys)
        if rng.random() < 0.1:
            svc.delete(topic, key=key)
        else:
            svc.publish(topic, Account(key, f"owner-{key}", i, "x" * 40))
    assert svc.flush(300) == 0
    asyncio.run(svc.stop())


def end_offsets(broker_url: str, topic: str) -> int:
    broker = open_broker(broker_url)
    admin = broker.admin()
    try:
        return sum(o.latest for o in admin.offsets(topic).values())
    finally:
        admin.close()
        broker.close()


def parsed(registry: Any, subject: str) -> Any:
    raw = registry.latest(subject).schema
    if isinstance(raw, str):
        with contextlib.suppress(json.JSONDecodeError):  # a primitive may be stored bare: long
            raw = json.loads(raw)
    return fastavro.parse_schema(raw)


def hand_written(
    broker_url: str, registry_url: str, database: str, topic: str, end: int, poll: int
) -> float:
    registry = open_registry(registry_url)
    key_schema, value_schema = parsed(registry, f"{topic}-key"), parsed(registry, f"{topic}-value")
    registry.close()
    engine = create_engine(database)
    table = f"hand_{uuid.uuid4().hex[:8]}"
    group = f"bench-hand-{uuid.uuid4().hex[:6]}"
    # the key as the mirror declares it: INTEGER (the rowid) on SQLite, BIGINT elsewhere
    key_type = "INTEGER" if engine.dialect.name == "sqlite" else "BIGINT"
    with engine.begin() as conn:
        conn.execute(
            text(
                f"CREATE TABLE {table} (id {key_type} PRIMARY KEY, owner TEXT NOT NULL, "
                "balance BIGINT NOT NULL, note TEXT NOT NULL)"
            )
        )
        conn.execute(
            text(
                f"CREATE TABLE IF NOT EXISTS {table}_offsets (grp TEXT, topic TEXT, part INT, "
                "next_offset BIGINT, PRIMARY KEY (grp, topic, part))"
            )
        )
    upsert = text(
        f"INSERT INTO {table} (id, owner, balance, note) VALUES (:id, :owner, :balance, :note) "
        "ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, balance = excluded.balance, "
        "note = excluded.note"
    )
    delete = text(f"DELETE FROM {table} WHERE id = :id")
    save = text(
        f"INSERT INTO {table}_offsets (grp, topic, part, next_offset) VALUES "
        "(:grp, :topic, :part, :next_offset) ON CONFLICT (grp, topic, part) DO UPDATE SET "
        "next_offset = excluded.next_offset"
    )
    reader = fastavro.schemaless_reader
    broker = open_broker(broker_url)
    consumer = broker.consumer(group)
    done: dict[int, int] = {}
    read = 0
    start = time.perf_counter()
    consumer.subscribe([topic])
    while sum(done.values()) < end:
        batch = consumer.poll(1.0, poll)
        if not batch:
            continue
        read += len(batch.rows)
        last: dict[int, Any] = {}
        for _, partition, offset, raw_key, raw_value, _, _ in batch.rows:
            assert raw_key is not None
            kb = io.BytesIO(raw_key)
            kb.seek(5)
            key: Any = reader(kb, key_schema, None)
            if raw_value is None:
                value = None
            else:
                vb = io.BytesIO(raw_value)
                vb.seek(5)
                value = reader(vb, value_schema, None)
            last.pop(key, None)
            last[key] = value
            done[partition] = offset + 1
        rows = [v for v in last.values() if v is not None]
        gone = [{"id": k} for k, v in last.items() if v is None]
        with engine.begin() as conn:
            if rows:
                conn.execute(upsert, rows)
            if gone:
                conn.execute(delete, gone)
            conn.execute(
                save,
                [
                    {"grp": group, "topic": topic, "part": p, "next_offset": o}
                    for p, o in done.items()
                ],
            )
        consumer.commit({TopicPartition(topic, p): o for p, o in done.items()})
    elapsed = time.perf_counter() - start
    assert read == end, f"read {read} records of {end}: was the topic compacted?"
    consumer.close()
    broker.close()
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE {table}"))
        conn.execute(text(f"DROP TABLE {table}_offsets"))
    engine.dispose()
    return elapsed


def stored_total(engine: Engine, group: str) -> int:
    with engine.connect() as conn:
        got = conn.execute(
            text(f"SELECT SUM(next_offset) FROM {OFFSETS_TABLE} WHERE consumer_group = :g"),
            {"g": group},
        ).scalar()
    return int(got or 0)


def mirror(
    broker: str, registry: str, database: str, topic: EntityTopic[Account], end: int, poll: int
) -> float:
    async def main() -> float:
        svc = Service(
            f"bench-mirror-{uuid.uuid4().hex[:6]}",
            broker=broker,
            registry=registry,
            database=database,
            config=ServiceConfig(poll_records=poll),
        )
        m = svc.mirror(topic, table=f"mirror_{uuid.uuid4().hex[:8]}")
        engine = svc.database.engine
        start = time.perf_counter()
        await svc.start()
        # A record counts as handled once its transaction committed: watching the counter keeps
        # the event loop (which decodes) free of the database reads a poll of the table takes.
        while svc.stats["handled"] < end:
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - start
        await svc.stop()
        assert stored_total(engine, svc.group) == end, "the stored offsets miss records"
        assert svc.stats["handled"] == end, "records were handled twice"
        with engine.begin() as conn:
            assert conn.execute(select(func.count()).select_from(m.table)).scalar_one() > 0
            m.table.drop(conn)
        svc.database.dispose()
        return elapsed

    return asyncio.run(main())


def handlers(broker: str, registry: str, database: str, n: int, transactional: bool) -> float:
    topic = EventTopic(f"bench.ticks.{uuid.uuid4().hex[:6]}", Tick, partitions=4)
    producer = Service("bench-producer", broker=broker, registry=registry)
    for i in range(n):
        producer.emit(topic, Tick(i))
    assert producer.flush(300) == 0
    asyncio.run(producer.stop())

    async def main() -> float:
        svc = Service(
            f"bench-handler-{uuid.uuid4().hex[:6]}",
            broker=broker,
            registry=registry,
            database=database,
            config=ServiceConfig(poll_records=2000),
        )
        if transactional:

            @svc.on(topic)
            def booked(tick: Tick, session: Session) -> None:
                pass

        else:

            @svc.on(topic)
            def plain(tick: Tick) -> None:
                pass

        start = time.perf_counter()
        await svc.start()
        while svc.stats["handled"] < n:
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - start
        await svc.stop()
        svc.database.dispose()
        return elapsed

    return n / asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--broker", default=None, help="broker URL (default: embedded, temp dir)")
    parser.add_argument("--database", default=None, help="SQLAlchemy URL (default: SQLite, temp)")
    parser.add_argument("--updates", type=int, default=200_000)
    parser.add_argument("--keys", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3, help="best of N for each side")
    parser.add_argument(
        "--poll",
        type=int,
        default=None,
        help="records per poll, both mirrors (default: the Service's poll_records on the broker)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ferryman-bench-") as tmp:
        broker = args.broker or f"embedded:{Path(tmp) / 'broker.db'}"
        if args.poll is None:  # what a Service polls on this broker by default
            embedded = not broker.startswith("kafka")
            args.poll = ServiceConfig().for_broker(embedded=embedded).polled
        registry = f"embedded:{Path(tmp) / 'registry.db'}"
        database = args.database or f"sqlite:///{Path(tmp) / 'mirror.db'}"
        # Compaction held off for a day: every round must read all N updates (the embedded
        # cleaner compacts a topic in a process that keeps its broker open for 30 s).
        topic = EntityTopic(
            f"bench.accounts.{uuid.uuid4().hex[:6]}",
            Account,
            key="id",
            partitions=4,
            config={"min.compaction.lag.ms": 86_400_000},
        )
        t0 = time.perf_counter()
        produce(broker, registry, topic, args.updates, args.keys)
        end = end_offsets(broker, topic.name)
        print(f"produced {args.updates} updates in {time.perf_counter() - t0:.1f}s")
        hands, mirrors = [], []
        for _ in range(args.rounds):  # interleaved, so a noisy neighbour hits both sides alike
            hand = hand_written(broker, registry, database, topic.name, end, args.poll)
            hands.append(args.updates / hand)
            mirrors.append(args.updates / mirror(broker, registry, database, topic, end, args.poll))
        plain = max(handlers(broker, registry, database, args.events, False) for _ in range(2))
        tx = max(handlers(broker, registry, database, args.events, True) for _ in range(2))
        print(
            f"broker={broker.split(':', 1)[0]} database={database.split(':', 1)[0]} "
            f"updates={args.updates} keys={args.keys} poll={args.poll} best of {args.rounds}"
        )
        h, m = max(hands), max(mirrors)
        print(f"hand-written mirror: {h:>9,.0f} rows/s")
        print(f"svc.mirror:          {m:>9,.0f} rows/s   ratio {m / h:.2f}x (target >= 0.7x)")
        print(f"plain handler:          {plain:>9,.0f} records/s")
        print(f"transactional handler:  {tx:>9,.0f} records/s   ratio {tx / plain:.2f}x")


if __name__ == "__main__":
    main()
