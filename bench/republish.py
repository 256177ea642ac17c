"""Joins: partial writes/s, republish throughput (entities/s), and the delay from a source record
to its joined output at a cadence.

Run: ``python bench/republish.py`` (SQLite in a temp dir, and PostgreSQL when
``FERRYMAN_TEST_POSTGRES`` is set, in a schema of its own that is dropped afterwards);
``--entities N`` (default 50,000); ``--every S`` (default 1.0) and ``--delay-seconds S`` (default
10) for the delay run; ``--broker`` to also republish through the embedded broker's producer.

- writes: N products, then N category assignments keyed by assignment id (a mapped key), applied
  with ``JoinedTable.apply`` in polls of 500 records, marks and offsets included;
- republish: one ``run_once`` over the N marked keys: lease, read rows, build a dict, ``send``
  (a future already resolved, or the embedded producer with JSON values), settle the marks;
- delay: a writer changes one product every 10 ms while ``run(every=S)`` publishes; the delay of
  each write is from its commit to the first ``send`` that carries it (or a newer state).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Column, Table, Text, create_engine, text
from sqlalchemy.engine import make_url

from ferryman.broker.embedded import EmbeddedBroker
from ferryman.records import TopicSpec
from ferryman.stores import Database, JoinedTable, MirrorRecord, Republisher, Send

POLL = 500


@dataclass
class Product:
    id: int
    name: str
    price: int


@dataclass
class Assignment:
    id: str
    product_id: int
    category: str


def joined_table(db: Database) -> JoinedTable:
    view = Table(
        "product_view",
        db.metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=False),
        Column("name", Text),
        Column("price", BigInteger),
        Column("category", Text),
    )
    joined = JoinedTable(db, view, owner="products")
    joined.part("products", ["name", "price"])
    joined.part("assignments", ["category"], key="product_id", required=False)
    db.create_missing()
    return joined


def build(row: dict[str, Any], children: Any) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "price": row["price"], "cat": row["category"]}


def acked(key: Any, value: Any) -> Future[None]:
    done: Future[None] = Future()
    done.set_result(None)
    return done


def write(db: Database, joined: JoinedTable, n: int) -> float:
    """Partial writes per second: n products, then n assignments."""
    records = [MirrorRecord("products", 0, i, i, Product(i, f"p{i}", i % 100)) for i in range(n)]
    records += [
        MirrorRecord("assignments", 0, i, f"a{i}", Assignment(f"a{i}", i, "c")) for i in range(n)
    ]
    started = time.perf_counter()
    for start in range(0, len(records), POLL):
        with db.begin() as conn:
            joined.apply(conn, records[start : start + POLL], "bench")
    return len(records) / (time.perf_counter() - started)


def republish(db: Database, joined: JoinedTable, send: Send) -> float:
    rep = Republisher(db, joined, build, every=1.0, batch=2000)
    rep.republish_all()
    n = rep.pending()
    started = time.perf_counter()
    sent = rep.run_once(send)
    elapsed = time.perf_counter() - started
    assert sent == n, (sent, n)
    assert rep.pending() == 0
    return n / elapsed


def delay(db: Database, joined: JoinedTable, every: float, seconds: float) -> tuple[float, float]:
    """p50 and p99 (ms) from each product write's commit to the first send carrying it (or a
    newer state of the product): what a consumer of the joined topic waits."""
    rep = Republisher(db, joined, build, every=every)
    rep.run_once(acked)
    commits: list[tuple[int, float]] = []  # (price, commit time); the price identifies a write
    sends: list[tuple[int, float]] = []

    def send(key: Any, value: Any) -> Future[None]:
        sends.append((value["price"], time.monotonic()))
        return acked(key, value)

    stop = threading.Event()
    runner = threading.Thread(target=rep.run, args=(send, stop))
    runner.start()
    offset, price = 10_000_000, 1000
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        price += 1
        offset += 1
        with db.begin() as conn:
            record = MirrorRecord("products", 0, offset, 7, Product(7, "p7", price))
            joined.apply(conn, [record], "bench")
        commits.append((price, time.monotonic()))
        stop.wait(0.01)
    stop.wait(every * 2)  # the last writes' window
    stop.set()
    runner.join()
    delays = []
    for written, at in commits:
        carried = [t for p, t in sends if p >= written]
        if carried:
            delays.append(max(0.0, min(carried) - at))
    q = statistics.quantiles(delays, n=100)
    return q[49] * 1000, q[98] * 1000


def run(url: str, label: str, args: argparse.Namespace, tmp: Path) -> None:
    db = Database(url)
    try:
        joined = joined_table(db)
        writes = write(db, joined, args.entities)
        fake = republish(db, joined, acked)
        line = f"{label:10} writes {writes:>9,.0f}/s  republish {fake:>9,.0f} entities/s"
        if args.broker:
            broker = EmbeddedBroker(tmp / f"{label}-broker.db", cleaner_interval=None)
            broker.admin().create_topic(TopicSpec("enriched", 4, {"cleanup.policy": "compact"}))
            producer = broker.producer()

            def produce(key: Any, value: Any) -> Any:
                body = None if value is None else json.dumps(value).encode()
                return producer.send("enriched", body, key=str(key).encode())

            line += f"  through the embedded broker {republish(db, joined, produce):>9,.0f}/s"
            producer.close()
            broker.close()
        print(line, flush=True)
        p50, p99 = delay(db, joined, args.every, args.delay_seconds)
        print(f"{label:10} delay at every={args.every}s: p50 {p50:.0f} ms, p99 {p99:.0f} ms")
    finally:
        db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entities", type=int, default=50_000)
    parser.add_argument("--every", type=float, default=1.0)
    parser.add_argument("--delay-seconds", type=float, default=10.0)
    parser.add_argument("--broker", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run(f"sqlite:///{tmp}/bench.db", "sqlite", args, Path(tmp))
        server = os.environ.get("FERRYMAN_TEST_POSTGRES", "").strip()
        if server:
            schema = f"bench_{uuid.uuid4().hex[:12]}"
            admin = create_engine(server, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            try:
                url = make_url(server).update_query_dict({"options": f"-csearch_path={schema}"})
                run(url.render_as_string(hide_password=False), "postgresql", args, Path(tmp))
            finally:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                admin.dispose()


if __name__ == "__main__":
    main()
