"""Republisher on SQLite and PostgreSQL: changed keys published once per pass, tombstones for
deleted rows, marks cleared only when no newer write came, the oracle check against a random
workload, the bounded output rate, and two republishers sharing one database."""

from __future__ import annotations

import json
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from ferryman.broker.embedded import EmbeddedBroker
from ferryman.errors import ConfigError, ProduceError
from ferryman.records import TopicPartition, TopicSpec
from ferryman.stores import DIRTY_TABLE, Database, JoinedTable, Republisher

from .catalog_join import (
    GROUP,
    Assignment,
    Line,
    Log,
    Product,
    Sources,
    as_json,
    build,
    catalog,
    expected_join,
)


@pytest.fixture
def joined(database: Database) -> JoinedTable:
    return catalog(database)


def apply(database: Database, joined: JoinedTable, *records: Any) -> None:
    with database.begin() as conn:
        joined.apply(conn, records, GROUP)


def republisher(database: Database, joined: JoinedTable, **options: Any) -> Republisher:
    return Republisher(database, joined, build, every=options.pop("every", 0.05), **options)


def enriched(pid: int, name: str, price: int, category: str | None = None, lines: Any = ()) -> Any:
    return {"id": pid, "name": name, "price": price, "category": category, "lines": list(lines)}


def test_publishes_each_changed_key_once_then_nothing(
    database: Database, joined: JoinedTable
) -> None:
    src = Sources()
    apply(
        database,
        joined,
        src.rec("products", 1, Product(1, "lamp", 30)),
        src.rec("products", 2, Product(2, "desk", 90)),
        src.rec("assignments", "a1", Assignment("a1", 1, "lighting")),
        src.rec("lines", "l1", Line("l1", 2, 3)),
    )
    log, rep = Log(), republisher(database, joined)
    assert rep.run_once(log) == 2
    assert sorted(log.records) == [
        (1, enriched(1, "lamp", 30, "lighting")),
        (2, enriched(2, "desk", 90, None, [["l1", 3]])),
    ]
    assert rep.pending() == 0
    assert rep.run_once(log) == 0


def test_a_deleted_row_or_owner_becomes_a_tombstone(
    database: Database, joined: JoinedTable
) -> None:
    src = Sources()
    apply(
        database,
        joined,
        src.rec("products", 1, Product(1, "lamp", 30)),
        src.rec("products", 2, Product(2, "desk", 90)),
        src.rec("assignments", "a2", Assignment("a2", 2, "furniture")),
    )
    log, rep = Log(), republisher(database, joined)
    rep.run_once(log)
    apply(database, joined, src.rec("products", 1, None), src.rec("products", 2, None))
    log.records.clear()
    assert rep.run_once(log) == 2
    assert sorted(log.records) == [(1, None), (2, None)]  # 2's row stays (its category waits)


def test_incomplete_rows_skip_or_get_defaults(database: Database) -> None:
    joined = catalog(database, required_category=True)
    src = Sources()
    apply(database, joined, src.rec("products", 1, Product(1, "lamp", 30)))
    log = Log()
    assert republisher(database, joined).run_once(log) == 0
    assert log.records == []
    apply(database, joined, src.rec("products", 1, Product(1, "lamp", 31)))
    assert republisher(database, joined, incomplete="defaults").run_once(log) == 1
    assert log.records == [(1, enriched(1, "lamp", 31))]
    apply(database, joined, src.rec("assignments", "a1", Assignment("a1", 1, "lighting")))
    republisher(database, joined).run_once(log)
    assert log.records[-1] == (1, enriched(1, "lamp", 31, "lighting"))


def test_a_write_landing_during_its_republish_is_not_lost(
    database: Database, joined: JoinedTable
) -> None:
    src = Sources()
    apply(database, joined, src.rec("products", 1, Product(1, "lamp", 30)))
    log = Log()

    def send_while_a_write_lands(key: Any, value: Any) -> Future[None]:
        if not log.records:  # the first publish: the source changes before the ack
            apply(database, joined, src.rec("products", 1, Product(1, "lamp", 99)))
        return log(key, value)

    rep = republisher(database, joined)
    assert rep.run_once(send_while_a_write_lands) == 1
    assert rep.pending() == 1  # the newer version kept its mark
    assert rep.run_once(log) == 1
    assert log.records[-1] == (1, enriched(1, "lamp", 99))
    assert rep.pending() == 0


def test_a_key_written_as_the_pass_begins_is_still_published(
    database: Database, joined: JoinedTable
) -> None:
    """A hot key's last write always lands just before the pass claims: the pass still takes it
    (it was marked before the pass began), with the newest state."""
    src = Sources()
    apply(database, joined, src.rec("products", 1, Product(1, "lamp", 30)))

    class WriteBeforeClaim(Republisher):
        def _claim(self, began: float) -> list[tuple[str, int]]:
            apply(database, joined, src.rec("products", 1, Product(1, "lamp", 31)))
            return super()._claim(began)

    log = Log()
    assert WriteBeforeClaim(database, joined, build, every=1).run_once(log) == 1
    assert log.records == [(1, enriched(1, "lamp", 31))]


def test_without_debounce_a_mark_made_after_the_claim_read_the_clock_is_taken(
    database: Database, joined: JoinedTable
) -> None:
    """A writer holding SQLite's lock while the claim waits marks its key later than the claim's
    clock: without a debounce the key is still taken (it was marked before the pass began)."""
    apply(database, joined, Sources().rec("products", 1, Product(1, "lamp", 30)))
    d = database.metadata.tables[DIRTY_TABLE]
    with database.begin() as conn:  # as such a writer leaves it: last change "in the future"
        conn.execute(update(d).values(changed_at=time.time() + 5))
    log = Log()
    assert republisher(database, joined).run_once(log) == 1


def test_a_failed_ack_keeps_the_mark_and_is_raised(database: Database, joined: JoinedTable) -> None:
    src = Sources()
    apply(
        database,
        joined,
        src.rec("products", 1, Product(1, "lamp", 30)),
        src.rec("products", 2, Product(2, "desk", 90)),
    )
    log = Log()

    def send(key: Any, value: Any) -> Future[None]:
        if key == 2:
            failed: Future[None] = Future()
            failed.set_exception(ProduceError("broker said no"))
            return failed
        return log(key, value)

    rep = republisher(database, joined)
    with pytest.raises(ProduceError):
        rep.run_once(send)
    assert rep.pending() == 1  # 1 was acknowledged and cleared; 2 waits, its lease released
    assert rep.run_once(log) == 1
    assert log.records[-1][0] == 2


def test_a_build_failing_for_one_key_does_not_hold_back_the_others(
    database: Database, joined: JoinedTable
) -> None:
    src = Sources()
    apply(database, joined, *(src.rec("products", i, Product(i, f"p{i}", i)) for i in range(5)))

    def fussy(row: Any, children: Any) -> Any:
        if row["id"] == 0:  # the oldest key, first in every batch
            raise ValueError("no price list for product 0")
        return build(row, children)

    log = Log()
    with pytest.raises(ValueError, match="product 0"):
        Republisher(database, joined, fussy, every=1).run_once(log)
    assert sorted(k for k, _ in log.records) == [1, 2, 3, 4]
    rep = republisher(database, joined)
    assert rep.pending() == 1
    assert rep.run_once(log) == 1


def test_a_crashed_republishers_keys_come_back_after_its_lease(
    database: Database, joined: JoinedTable
) -> None:
    apply(database, joined, Sources().rec("products", 1, Product(1, "lamp", 30)))
    crashed = republisher(database, joined, lease=0.3)
    assert len(crashed._claim(time.time())) == 1  # claimed, then killed before it sent
    other, log = republisher(database, joined), Log()
    assert other.run_once(log) == 0  # leased: not published twice at once
    deadline = time.monotonic() + 10
    while not log.records and time.monotonic() < deadline:
        threading.Event().wait(0.02)  # polling interval, not a wait for the outcome
        other.run_once(log)
    assert log.records == [(1, enriched(1, "lamp", 30))]


def test_debounce_waits_for_writes_to_pause(database: Database, joined: JoinedTable) -> None:
    apply(database, joined, Sources().rec("products", 1, Product(1, "lamp", 30)))
    log = Log()
    assert republisher(database, joined, debounce=3600).run_once(log) == 0
    assert republisher(database, joined, debounce=0).run_once(log) == 1


def test_republish_all_marks_every_row_or_a_filtered_set(
    database: Database, joined: JoinedTable
) -> None:
    src = Sources()
    apply(database, joined, *(src.rec("products", i, Product(i, f"p{i}", i)) for i in range(10)))
    log, rep = Log(), republisher(database, joined)
    rep.run_once(log)
    log.records.clear()
    assert rep.republish_all(where=joined.table.c.price >= 7) == 3
    rep.run_once(log)
    assert sorted(k for k, _ in log.records) == [7, 8, 9]
    assert rep.republish_all() == 10
    assert rep.run_once(log) == 10


def test_settings_are_checked(database: Database, joined: JoinedTable) -> None:
    with pytest.raises(ConfigError, match="every="):
        Republisher(database, joined, build, every=0)
    with pytest.raises(ConfigError, match="batch="):
        Republisher(database, joined, build, every=1, batch=100_000)
    with pytest.raises(ConfigError, match="incomplete="):
        Republisher(database, joined, build, every=1, incomplete="maybe")  # type: ignore[arg-type]


def test_oracle_random_workload(database: Database, joined: JoinedTable) -> None:
    """Random updates and tombstones on three sources with three key schemas, republished at
    random moments: the compacted output equals the join of the sources' final states."""
    rng = random.Random(13)
    src = Sources()
    products: dict[int, Product] = {}
    assignments: dict[str, Assignment] = {}
    lines: dict[str, Line] = {}
    log, rep = Log(), republisher(database, joined, batch=7)
    for _step in range(120):
        batch = []
        for _ in range(rng.randint(1, 8)):
            pid = rng.randint(1, 12)
            kind = rng.random()
            if kind < 0.35:
                if rng.random() < 0.25:
                    products.pop(pid, None)
                    batch.append(src.rec("products", pid, None))
                else:
                    products[pid] = Product(pid, f"p{pid}-{rng.randint(0, 99)}", rng.randint(1, 9))
                    batch.append(src.rec("products", pid, products[pid]))
            elif kind < 0.65:
                # Assignment ids are strings, one per product: the join is one-to-one.
                aid = f"a{pid}"
                if rng.random() < 0.3:
                    assignments.pop(aid, None)
                    batch.append(src.rec("assignments", aid, None))
                else:
                    assignments[aid] = Assignment(aid, pid, rng.choice(["x", "y", "z"]))
                    batch.append(src.rec("assignments", aid, assignments[aid]))
            else:
                lid = f"l{rng.randint(1, 30)}"  # lines move between products
                if rng.random() < 0.3:
                    lines.pop(lid, None)
                    batch.append(src.rec("lines", lid, None))
                else:
                    lines[lid] = Line(lid, pid, rng.randint(1, 5))
                    batch.append(src.rec("lines", lid, lines[lid]))
        apply(database, joined, *batch)
        if rng.random() < 0.3:
            rep.run_once(log)
    rep.run_once(log)
    assert rep.pending() == 0
    assert log.compacted() == expected_join(products, assignments, lines)
    assert len(log.records) < src.next["products"] + src.next["assignments"] + src.next["lines"]


def test_output_is_bounded_to_one_record_per_key_per_window(
    database: Database, joined: JoinedTable
) -> None:
    """10,000 updates of one product over several cadence windows give at most one record of
    it per window: ``run`` starts at most one pass per ``every`` and a pass publishes a key once."""
    every = 0.1
    src = Sources()
    log, rep = Log(), republisher(database, joined, every=every)
    stop = threading.Event()
    runner = threading.Thread(target=rep.run, args=(log, stop))
    started = time.monotonic()
    runner.start()
    for start in range(0, 10_000, 20):
        apply(
            database,
            joined,
            *(
                src.rec("products", 1, Product(1, "lamp", price))
                for price in range(start, start + 20)
            ),
        )
    stop.set()
    runner.join(timeout=30)
    windows = (time.monotonic() - started) / every + 1
    rep.run_once(log)
    assert log.records[-1] == (1, enriched(1, "lamp", 9_999))
    assert 1 <= len(log.records) <= windows + 1  # + the final pass
    assert len(log.records) < 10_000


def test_two_republishers_never_publish_a_key_concurrently(
    database: Database, joined: JoinedTable
) -> None:
    """Two instances share the database while a writer raises prices: no key is in flight in
    both at once, each key's prices are published in order, and the final state is exact."""
    src = Sources()
    acks = ThreadPoolExecutor(4)
    in_flight: set[Any] = set()
    lock = threading.Lock()
    overlaps: list[Any] = []
    published: dict[Any, list[int]] = {}
    final = Log()

    def send(key: Any, value: Any) -> Future[None]:
        with lock:
            if key in in_flight:
                overlaps.append(key)
            in_flight.add(key)
            published.setdefault(key, []).append(value["price"])
            final(key, value)

        def ack() -> None:
            time.sleep(0.001)  # the broker's round trip: widens the window a race would need
            with lock:
                in_flight.discard(key)

        return acks.submit(ack)

    stop = threading.Event()
    instances = [republisher(database, joined, batch=10, every=0.01) for _ in range(2)]
    threads = [threading.Thread(target=r.run, args=(send, stop)) for r in instances]
    for t in threads:
        t.start()
    try:
        for price in range(60):
            apply(
                database,
                joined,
                *(src.rec("products", k, Product(k, "p", price)) for k in range(25)),
            )
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    instances[0].run_once(send)
    acks.shutdown()
    assert not any(t.is_alive() for t in threads)
    assert overlaps == []
    assert all(prices == sorted(prices) for prices in published.values())
    assert final.compacted() == {k: enriched(k, "p", 59) for k in range(25)}


def test_through_a_real_embedded_broker(
    database: Database, joined: JoinedTable, tmp_path: Path
) -> None:
    """send produces JSON to an entity topic of the embedded broker; the topic read back and
    compacted equals the join."""
    broker = EmbeddedBroker(tmp_path / "broker.db", cleaner_interval=None)
    try:
        broker.admin().create_topic(TopicSpec("enriched", 1, {"cleanup.policy": "compact"}))
        producer = broker.producer()
        src = Sources()
        apply(
            database,
            joined,
            src.rec("products", 1, Product(1, "lamp", 30)),
            src.rec("products", 2, Product(2, "desk", 90)),
            src.rec("assignments", "a1", Assignment("a1", 1, "lighting")),
        )

        def send(key: Any, value: Any) -> Any:
            return producer.send("enriched", as_json(value), key=json.dumps(key).encode())

        rep = republisher(database, joined)
        rep.run_once(send)
        apply(database, joined, src.rec("products", 2, None))
        rep.run_once(send)
        producer.close()
        consumer = broker.consumer(None)
        consumer.assign([TopicPartition("enriched", 0)])
        seen: dict[Any, Any] = {}
        deadline = time.monotonic() + 10
        while len(seen) < 2 and time.monotonic() < deadline:
            for r in consumer.poll(timeout=0.5):
                seen[json.loads(r.key or b"null")] = (
                    None if r.value is None else json.loads(r.value)
                )
        consumer.close()
        compacted = {k: v for k, v in seen.items() if v is not None}
        assert compacted == {1: enriched(1, "lamp", 30, "lighting")}
        assert seen[2] is None
    finally:
        broker.close()
