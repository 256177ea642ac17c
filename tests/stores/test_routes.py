"""The runs the consumer loop drives for the database's routes, without a broker: a
transactional handler's session commits with the offsets (a redelivered run changes nothing, a
failing one leaves nothing), a mirror run rolls back whole on a poisoned record, and lag."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import Column, Integer, Table, func, select

import ferryman as fm
from ferryman.errors import ConfigError, PoisonedRecord
from ferryman.records import TopicPartition
from ferryman.stores import Database, Mirror
from ferryman.stores.routes import (
    LagStats,
    MirrorLag,
    StoreRun,
    TransactionalRun,
    mirror_lag,
    other_positionals,
    session_parameter,
    stored_offsets,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@dataclass
class Customer:
    id: int
    name: str


@dataclass
class Item:
    """A consumed record as the loop hands it over (the runtime's Message)."""

    topic: str
    partition: int
    offset: int
    key: Any
    value: Any
    timestamp: int = 0


customers = fm.EntityTopic("customers", Customer, key="id")


def counter(database: Database) -> Table:
    table = Table(
        "counted",
        database.metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
    )
    database.create_missing()
    return table


def count(database: Database, table: Table) -> int:
    with database.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_a_redelivered_run_is_skipped_by_its_stored_offsets(database: Database) -> None:
    table = counter(database)

    def book(value: int, session: Session) -> None:
        session.execute(table.insert().values(id=value))

    run = TransactionalRun(
        database, book, "g", batch=False, with_message=False, session_param="session"
    )
    items = [Item("orders", 0, n, None, n, 1000 + n) for n in range(5)]
    assert run(items) == (5, None)
    assert run(items[2:]) == (3, None)  # redelivered after a crash: nothing happens twice
    assert count(database, table) == 5
    assert stored_offsets(database, "g")({TopicPartition("orders", 0)}) == {
        TopicPartition("orders", 0): 5
    }


def test_a_failing_handler_leaves_neither_its_writes_nor_the_offsets(database: Database) -> None:
    table = counter(database)

    def book(value: int, session: Session) -> None:
        session.execute(table.insert().values(id=value))
        if value == 3:
            raise ValueError("no")

    run = TransactionalRun(
        database, book, "g", batch=False, with_message=False, session_param="session"
    )
    handled, exc = run([Item("orders", 0, n, None, n) for n in range(5)])
    assert (handled, type(exc)) == (0, ValueError)
    assert count(database, table) == 0
    assert stored_offsets(database, "g")({TopicPartition("orders", 0)}) == {}


def test_offsets_are_not_saved_when_sqlite_ended_the_transaction(tmp_path: Path) -> None:
    # SQLite rolls a transaction back by itself on a full disk or an I/O error, and a statement
    # after that commits on its own: the offsets would be saved without the handler's writes.
    # A handler that ends the transaction with a raw ROLLBACK stands in for that here. (SQLite
    # only: PostgreSQL refuses every statement of an aborted transaction.)
    database = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    table = counter(database)

    def book(value: int, session: Session) -> None:
        session.execute(table.insert().values(id=value))
        if value == 2:
            session.connection().exec_driver_sql("ROLLBACK")

    run = TransactionalRun(
        database, book, "g", batch=False, with_message=False, session_param="session"
    )
    handled, exc = run([Item("orders", 0, n, None, n) for n in range(3)])
    assert handled == 0
    assert isinstance(exc, fm.StoreError)
    assert "SQLite ended the transaction" in str(exc)
    assert stored_offsets(database, "g")({TopicPartition("orders", 0)}) == {}, "nothing done"
    assert count(database, table) == 0
    database.dispose()


def test_a_batch_handler_gets_the_values_and_the_session(database: Database) -> None:
    table = counter(database)
    seen: list[list[int]] = []

    def book(values: list[int], s: Session) -> None:
        seen.append(values)
        s.execute(table.insert(), [{"id": v} for v in values])

    run = TransactionalRun(database, book, "g", batch=True, with_message=False, session_param="s")
    assert run([Item("orders", 1, n, None, n) for n in range(3)]) == (3, None)
    assert seen == [[0, 1, 2]]


def test_a_mirror_run_with_a_poisoned_record_rolls_back_whole(database: Database) -> None:
    def to_row(c: Customer) -> dict[str, Any]:
        if c.name == "bad":
            raise ValueError("bad customer")
        return {"id": c.id, "name": c.name}

    mirror = Mirror(database, customers, transform=to_row)
    database.create_missing()
    run = StoreRun(database, mirror, "g")
    items = [
        Item("customers", 0, 0, 1, Customer(1, "a")),
        Item("customers", 0, 1, 2, Customer(2, "bad")),
    ]
    handled, exc = run(items)
    assert handled == 0
    assert isinstance(exc, PoisonedRecord)
    assert "customers[0]@1" in str(exc)
    assert "bad customer" in str(exc)
    assert count(database, mirror.table) == 0
    assert run(items[:1]) == (1, None)  # the policy's isolation: the good one alone
    assert count(database, mirror.table) == 1


def test_lag_counts_the_offsets_behind_and_the_seconds_since_the_last_record(
    database: Database,
) -> None:
    mirror = Mirror(database, customers)
    database.create_missing()
    with database.begin() as conn:
        mirror.apply(conn, [fm_record(0, 4, 1_000_000)], "g")
    with database.engine.connect() as conn:
        assert mirror_lag(conn, database, "g", "customers", {0: 5}, now=1_010.0) == MirrorLag(
            0, 0.0
        )
        lag = mirror_lag(conn, database, "g", "customers", {0: 8, 1: 2}, now=1_010.0)
        assert lag == MirrorLag(3 + 2, 10.0)
        assert mirror_lag(conn, database, "other", "customers", {0: 3}).seconds is None


def fm_record(partition: int, offset: int, timestamp: int) -> Any:
    from ferryman.stores import MirrorRecord

    return MirrorRecord("customers", partition, offset, 1, Customer(1, "a"), timestamp)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lag_stats_read_in_the_background_at_most_every_interval_and_only_when_active() -> None:
    clock = Clock()
    reads: list[float] = []
    lags = {"a": MirrorLag(3, 1.5), "b": MirrorLag(0, 0.0), "c": MirrorLag(2, None)}
    gate = threading.Event()

    def read() -> dict[str, MirrorLag]:
        gate.wait(10)  # the broker is slow: asking for the counters must not wait for it
        reads.append(clock.now)
        return lags

    stats = LagStats(read, every=2.0, clock=clock)
    assert stats() == {"mirror_lag_records": 0, "mirror_lag_ms": 0}  # not started: no read
    assert reads == []
    stats.start()
    assert stats() == {"mirror_lag_records": 0, "mirror_lag_ms": 0}  # the read is under way
    gate.set()
    wait(lambda: reads == [100.0])
    wait(lambda: stats()["mirror_lag_records"] == 5)
    # the most any mirror is behind; the seconds go on counting between reads
    assert stats() == {"mirror_lag_records": 5, "mirror_lag_ms": 1_500}
    clock.now += 1.0
    assert stats() == {"mirror_lag_records": 5, "mirror_lag_ms": 2_500}
    assert reads == [100.0]  # within the interval: no second read
    clock.now += 1.0
    stats()
    wait(lambda: reads == [100.0, 102.0])
    stats.stop()
    clock.now += 10.0
    stats()
    assert reads == [100.0, 102.0]  # stopped: the last figures, no read


def test_lag_stats_say_minus_one_when_records_wait_and_none_was_applied() -> None:
    stats = LagStats(lambda: {"a": MirrorLag(4, None)}, every=0.0)
    stats.start()
    stats()
    wait(lambda: stats() == {"mirror_lag_records": 4, "mirror_lag_ms": -1})


def test_lag_stats_keep_the_last_figures_when_a_read_fails() -> None:
    answers: list[Any] = [{"a": MirrorLag(1, 0.0)}, OSError("broker away")]

    def read() -> dict[str, MirrorLag]:
        answer = answers.pop(0) if answers else OSError("still away")
        if isinstance(answer, Exception):
            raise answer
        return dict(answer)

    stats = LagStats(read, every=0.0)
    stats.start()
    stats()
    wait(lambda: stats()["mirror_lag_records"] == 1)
    wait(lambda: not answers)
    assert stats()["mirror_lag_records"] == 1


def wait(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_a_session_is_asked_for_by_name_or_by_annotation() -> None:
    def by_name(event: Any, session: Any) -> None: ...
    def by_type(event: Any, db: Session) -> None: ...
    def none(event: Any, message: Any) -> None: ...

    assert session_parameter(by_name) == "session"
    assert session_parameter(by_type) == "db"
    assert session_parameter(none) is None
    assert other_positionals(by_type, "db") == 1
    with pytest.raises(ConfigError, match="fn\\(event, session\\)"):
        other_positionals(lambda session: None, "session")
