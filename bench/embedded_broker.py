"""Embedded broker throughput and latency, beside bare SQLite as the ceiling.

Run: ``python bench/embedded_broker.py`` (``--records N`` to change the volume).

Measures, for 100-byte and 1 KB values: batched produce records/s (send N, then flush),
consume records/s (poll until all N are read), produce->consume latency p50/p99 (one record
at a time, consumer in another process, woken through the broker's wake-up sockets), and
bare sqlite3 ``executemany`` inserts / in-order selects of the same rows in a similar table.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sqlite3
import statistics
import struct
import tempfile
import time
from pathlib import Path

from ferryman.broker.embedded import EmbeddedBroker
from ferryman.records import TopicPartition, TopicSpec

LATENCY_SAMPLES = 500


def bench_produce(path: Path, n: int, size: int) -> float:
    broker = EmbeddedBroker(path, cleaner_interval=None)
    broker.admin().create_topic(TopicSpec("bench", 1))
    producer = broker.producer()
    value = os.urandom(size)
    send = producer.send
    start = time.perf_counter()
    for _ in range(n):
        send("bench", value)
    assert producer.flush(120) == 0
    elapsed = time.perf_counter() - start
    broker.close()
    return n / elapsed


def bench_consume(path: Path, n: int) -> float:
    broker = EmbeddedBroker(path, cleaner_interval=None)
    consumer = broker.consumer(None)
    consumer.assign([TopicPartition("bench", 0)])
    got = 0
    start = time.perf_counter()
    while got < n:
        got += len(consumer.poll(1.0, 1000))
    elapsed = time.perf_counter() - start
    broker.close()
    return n / elapsed


def _latency_reader(path: str, ready: mp.Event, out: mp.Queue) -> None:  # type: ignore[type-arg]
    broker = EmbeddedBroker(path, cleaner_interval=None)
    consumer = broker.consumer(None, auto_offset_reset="latest")
    consumer.assign([TopicPartition("latency", 0)])
    consumer.position(TopicPartition("latency", 0))
    ready.set()
    samples: list[float] = []
    while len(samples) < LATENCY_SAMPLES:
        for r in consumer.poll(1.0):
            sent = struct.unpack_from("<q", r.value or b"")[0]
            samples.append((time.time_ns() - sent) / 1e6)
    out.put(samples)
    broker.close()


def bench_latency(path: Path, size: int) -> tuple[float, float]:
    broker = EmbeddedBroker(path, cleaner_interval=None)
    broker.admin().create_topic(TopicSpec("latency", 1))
    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    reader = ctx.Process(target=_latency_reader, args=(str(path), ready, out))
    reader.start()
    assert ready.wait(60)
    producer = broker.producer()
    pad = os.urandom(size - 8)
    for _ in range(LATENCY_SAMPLES):
        producer.send("latency", struct.pack("<q", time.time_ns()) + pad)
        time.sleep(0.002)  # one record at a time, as a service emits events
    samples: list[float] = out.get(timeout=60)
    reader.join(60)
    broker.close()
    q = statistics.quantiles(samples, n=100)
    return q[49], q[98]


def bench_bare_sqlite(path: Path, n: int, size: int) -> tuple[float, float]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE records(ts INTEGER, key BLOB, value BLOB, headers BLOB)")
    value = os.urandom(size)
    ts = time.time_ns() // 1_000_000
    start = time.perf_counter()
    rows = [(1 << 40 | i, ts, None, value, None) for i in range(n)]
    for i in range(0, n, 5000):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO records(rowid, ts, key, value, headers) VALUES (?, ?, ?, ?, ?)",
            rows[i : i + 5000],
        )
        conn.execute("COMMIT")
    insert = n / (time.perf_counter() - start)
    got = 0
    position = 1 << 40
    start = time.perf_counter()
    while got < n:
        batch = conn.execute(
            "SELECT rowid, ts, key, value, headers FROM records WHERE rowid >= ? "
            "ORDER BY rowid LIMIT 1000",
            (position,),
        ).fetchall()
        got += len(batch)
        position = batch[-1][0] + 1
    select = n / (time.perf_counter() - start)
    conn.close()
    return insert, select


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300_000, help="records per size")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in (100, 1024):
            n = args.records if size < 1000 else args.records // 3
            base = Path(tmp) / str(size)
            produce = bench_produce(base / "broker.db", n, size)
            consume = bench_consume(base / "broker.db", n)
            p50, p99 = bench_latency(base / "latency.db", size)
            insert, select = bench_bare_sqlite(base / "bare.db", n, size)
            rows.append((size, n, produce, insert, consume, select, p50, p99))
    print(
        f"{'value':>6} {'records':>8} | {'produce/s':>10} {'sqlite ins/s':>12} {'ratio':>6} | "
        f"{'consume/s':>10} {'sqlite sel/s':>12} {'ratio':>6} | {'p50 ms':>7} {'p99 ms':>7}"
    )
    for size, n, produce, insert, consume, select, p50, p99 in rows:
        print(
            f"{size:>5}B {n:>8} | {produce:>10,.0f} {insert:>12,.0f} {produce / insert:>6.2f} | "
            f"{consume:>10,.0f} {select:>12,.0f} {consume / select:>6.2f} | {p50:>7.2f} {p99:>7.2f}"
        )


if __name__ == "__main__":
    main()
