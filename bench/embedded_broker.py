"""Embedded broker throughput and latency, beside bare SQLite as the ceiling.

Run: ``python bench/embedded_broker.py`` (``--records N``, ``--repeat K``).

For 100-byte and 1 KB values it measures batched produce records/s (send N, then flush;
unkeyed into one partition, and keyed over 8 partitions, where Kafka's murmur2 in Python is
the extra cost), consume records/s (poll until all N are read), produce->consume latency
p50/p99 (one record every 2 ms, consumer in another process woken through the broker's
wake-up sockets), and bare sqlite3 ``executemany`` inserts / in-order selects of the same
rows in a similar table. Throughputs are the best of ``--repeat`` runs; the process CPU time
per record is printed too, since on a shared machine wall-clock rates move with the load.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ferryman.broker.embedded import EmbeddedBroker
from ferryman.records import TopicPartition, TopicSpec

LATENCY_SAMPLES = 1000

Rate = tuple[float, float]
"""(records per second, process CPU microseconds per record)"""


def timed(n: int, run: Callable[[], None]) -> Rate:
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return n / wall, cpu / n * 1e6


def best(runs: list[Rate]) -> Rate:
    return max(runs)


def bench_produce(path: Path, n: int, size: int, *, keyed: bool = False) -> Rate:
    """Unkeyed records into one partition or, ``keyed``, 10,000 keys over 8 partitions."""
    path.unlink(missing_ok=True)
    topic = "keyed" if keyed else "bench"
    broker = EmbeddedBroker(path, cleaner_interval=None)
    broker.admin().create_topic(TopicSpec(topic, 8 if keyed else 1))
    producer = broker.producer()
    value = os.urandom(size)
    keys = [b"customer-%d" % i for i in range(10_000)] if keyed else [None]
    send = producer.send

    def run() -> None:
        for i in range(n):
            send(topic, value, key=keys[i % len(keys)])
        assert producer.flush(120) == 0

    rate = timed(n, run)
    broker.close()
    return rate


def bench_consume(path: Path, n: int) -> Rate:
    broker = EmbeddedBroker(path, cleaner_interval=None)
    consumer = broker.consumer(None)
    consumer.assign([TopicPartition("bench", 0)])

    def run() -> None:
        got = 0
        while got < n:
            got += len(consumer.poll(1.0, 1000))

    rate = timed(n, run)
    broker.close()
    return rate


def _latency_reader(path: str, ready: Any, out: Any) -> None:
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


def bench_bare_sqlite(path: Path, n: int, size: int) -> tuple[Rate, Rate]:
    """The ceiling: executemany into a similar table, 5,000 rows per transaction; then
    select them in order, 1,000 at a time."""
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE records(ts INTEGER, key BLOB, value BLOB, headers BLOB)")
    value = os.urandom(size)
    ts = time.time_ns() // 1_000_000

    def insert() -> None:
        rows = [(1 << 40 | i, ts, None, value, None) for i in range(n)]
        for i in range(0, n, 5000):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO records(rowid, ts, key, value, headers) VALUES (?, ?, ?, ?, ?)",
                rows[i : i + 5000],
            )
            conn.execute("COMMIT")

    def select() -> None:
        got = 0
        position = 1 << 40
        while got < n:
            batch = conn.execute(
                "SELECT rowid, ts, key, value, headers FROM records WHERE rowid >= ? "
                "ORDER BY rowid LIMIT 1000",
                (position,),
            ).fetchall()
            got += len(batch)
            position = batch[-1][0] + 1

    rates = timed(n, insert), timed(n, select)
    conn.close()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300_000, help="records of 100 bytes")
    parser.add_argument("--repeat", type=int, default=3, help="runs per throughput figure")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in (100, 1024):
            n = args.records if size < 1000 else args.records // 3
            base = Path(tmp) / str(size)
            base.mkdir()
            produce, keyed, insert, select, consume = [], [], [], [], []
            for _ in range(args.repeat):
                produce.append(bench_produce(base / "broker.db", n, size))
                consume.append(bench_consume(base / "broker.db", n))
                keyed.append(bench_produce(base / "keyed.db", n, size, keyed=True))
                ins, sel = bench_bare_sqlite(base / "bare.db", n, size)
                insert.append(ins)
                select.append(sel)
            p50, p99 = bench_latency(base / "latency.db", size)
            figures = (best(produce), best(keyed), best(insert), best(consume), best(select))
            rows.append((size, n, *figures, p50, p99))
    print(
        f"{'value':>6} {'records':>8} | {'produce/s':>10} {'cpu us':>6} {'keyed/s':>9} "
        f"{'sqlite ins/s':>12} {'ratio':>5} | {'consume/s':>10} {'cpu us':>6} "
        f"{'sqlite sel/s':>12} {'ratio':>5} | {'p50 ms':>6} {'p99 ms':>6}"
    )
    for size, n, produce_r, keyed_r, insert_r, consume_r, select_r, p50, p99 in rows:
        print(
            f"{size:>5}B {n:>8} | {produce_r[0]:>10,.0f} {produce_r[1]:>6.2f} "
            f"{keyed_r[0]:>9,.0f} {insert_r[0]:>12,.0f} {produce_r[0] / insert_r[0]:>5.2f} | "
            f"{consume_r[0]:>10,.0f} {consume_r[1]:>6.2f} {select_r[0]:>12,.0f} "
            f"{consume_r[0] / select_r[0]:>5.2f} | {p50:>6.2f} {p99:>6.2f}"
        )
    print(
        f"load average (1 min) before {load_before:.2f}, after {os.getloadavg()[0]:.2f}; "
        f"{os.cpu_count()} CPUs; best of {args.repeat} runs"
    )


if __name__ == "__main__":
    main()
