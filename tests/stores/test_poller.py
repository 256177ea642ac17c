"""The table poller: a tie-safe (updated_at, id) watermark, a safety delay for late commits, and
the watermark kept in the caller's transaction."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, String, Table, insert

from ferryman.errors import ConfigError
from ferryman.stores import POLLERS_TABLE, Database, TablePoller

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


class Clock:
    """The poller's now(), moved by the test."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def legacy(metadata: MetaData) -> Table:
    return Table(
        "legacy_orders",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("status", String(20)),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    )


def add(database: Database, table: Table, *rows: tuple[int, dt.datetime]) -> None:
    with database.begin() as conn:
        conn.execute(
            insert(table), [{"id": i, "status": "new", "updated_at": at} for i, at in rows]
        )


def ids(rows: list[Any]) -> list[int]:
    return [row.id for row in rows]


def poll(database: Database, poller: TablePoller) -> list[int]:
    with database.begin() as conn:
        return ids(poller.poll(conn))


def test_rows_sharing_one_updated_at_are_all_returned_once(database: Database) -> None:
    table = legacy(database.metadata)
    clock = Clock(T0 + dt.timedelta(minutes=1))
    poller = TablePoller(database, table, safety_delay=5, limit=3, now=clock)
    database.create_missing()
    add(database, table, *((i, T0) for i in range(1, 11)))  # ten rows, one timestamp
    seen: list[int] = []
    while batch := poll(database, poller):
        seen.extend(batch)
    assert seen == list(range(1, 11))
    add(database, table, (11, T0))  # a new row with the same timestamp and a higher id
    assert poll(database, poller) == [11]


def test_rows_younger_than_the_safety_delay_wait(database: Database) -> None:
    table = legacy(database.metadata)
    clock = Clock(T0)
    poller = TablePoller(database, table, safety_delay=5, now=clock)
    database.create_missing()
    add(database, table, (1, T0 - dt.timedelta(seconds=10)), (2, T0 - dt.timedelta(seconds=2)))
    assert poll(database, poller) == [1]
    clock.now = T0 + dt.timedelta(seconds=4)
    assert poll(database, poller) == [2]


@pytest.mark.parametrize(("delay", "expected"), [(5.0, [2]), (0.0, [])])
def test_a_late_commit_with_an_older_timestamp_within_the_delay_is_seen(
    database: Database, delay: float, expected: list[int]
) -> None:
    # Row 2 set updated_at = T0 - 3 s, but its transaction commits only after the poller read
    # row 1 (T0 - 1 s). With the delay the poller had not passed T0 - 3 s yet; without it (the
    # naive watermark) row 2 is lost.
    table = legacy(database.metadata)
    clock = Clock(T0)
    poller = TablePoller(database, table, safety_delay=delay, now=clock)
    database.create_missing()
    add(database, table, (1, T0 - dt.timedelta(seconds=1)), (3, T0 - dt.timedelta(seconds=8)))
    first = poll(database, poller)
    assert first == ([3] if delay else [3, 1])
    add(database, table, (2, T0 - dt.timedelta(seconds=3)))  # the late commit
    clock.now = T0 + dt.timedelta(seconds=10)
    later = poll(database, poller)
    assert 2 in later if expected else 2 not in later


def test_the_watermark_rolls_back_with_the_callers_transaction(database: Database) -> None:
    table = legacy(database.metadata)
    poller = TablePoller(database, table, safety_delay=0, now=Clock(T0))
    database.create_missing()
    add(database, table, (1, T0 - dt.timedelta(seconds=1)))

    def failing_work() -> None:
        with database.begin() as conn:
            assert ids(poller.poll(conn)) == [1]
            raise RuntimeError("publishing failed")

    with pytest.raises(RuntimeError):
        failing_work()
    assert poll(database, poller) == [1]
    assert poll(database, poller) == []
    with database.begin() as conn:
        assert poller.watermark(conn) == (T0 - dt.timedelta(seconds=1), 1)


def test_a_numeric_updated_at_column_and_named_watermarks(database: Database) -> None:
    table = Table(
        "legacy_ticks",
        database.metadata,
        Column("ref", String(10), primary_key=True),
        Column("changed", BigInteger, nullable=False),
    )
    now = [1000]
    a = TablePoller(
        database,
        table,
        updated_at="changed",
        id="ref",
        safety_delay=10,
        name="a",
        now=lambda: now[0],
    )
    b = TablePoller(
        database,
        table,
        updated_at="changed",
        id="ref",
        safety_delay=10,
        name="b",
        now=lambda: now[0],
    )
    assert POLLERS_TABLE in database.create_missing()
    with database.begin() as conn:
        conn.execute(insert(table), [{"ref": "x", "changed": 900}, {"ref": "y", "changed": 995}])
    assert [r.ref for r in _poll(database, a)] == ["x"]
    now[0] = 1010
    assert [r.ref for r in _poll(database, a)] == ["y"]
    assert [r.ref for r in _poll(database, b)] == ["x", "y"]


def _poll(database: Database, poller: TablePoller) -> list[Any]:
    with database.begin() as conn:
        return poller.poll(conn)


def test_a_missing_column_is_named(database: Database) -> None:
    table = legacy(database.metadata)
    with pytest.raises(ConfigError, match="modified_at"):
        TablePoller(database, table, updated_at="modified_at")
    with pytest.raises(ConfigError, match="safety_delay"):
        TablePoller(database, table, safety_delay=-1)
