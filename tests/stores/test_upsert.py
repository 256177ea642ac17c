"""The upserts stores write with, on SQLite and PostgreSQL: Core's ``upsert`` of dicts and the
mirror's ``RowUpsert`` of tuples through the driver, which must store exactly what Core stores
(types converted, columns in any order, Python-side defaults computed) and refuse the same
values."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Numeric,
    Table,
    Text,
    Uuid,
    event,
    select,
)
from sqlalchemy.exc import StatementError

from ferryman.stores import Database
from ferryman.stores.upsert import RowUpsert, upsert

WHEN = dt.datetime(2026, 12, 1, 10, 30, 15, 123456, tzinfo=dt.UTC)


def typed(database: Database, name: str, **extra: Any) -> Table:
    table = Table(
        name,
        database.metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=False),
        Column("at", DateTime(timezone=True)),
        Column("ref", Uuid),
        Column("doc", JSON),
        Column("price", Numeric(10, 2)),
        Column("label", Text, **extra),
    )
    database.create_missing()
    return table


def stored(database: Database, table: Table) -> dict[Any, tuple[Any, ...]]:
    with database.engine.connect() as conn:
        return {r[0]: tuple(r[1:]) for r in conn.execute(select(table))}


@pytest.fixture
def compiled_by(database: Database) -> Iterator[list[bool]]:
    """Per INSERT the engine runs: whether Core compiled it (False: the driver path)."""
    seen: list[bool] = []

    def record(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: Any
    ) -> None:
        if statement.startswith("INSERT"):
            seen.append(context.compiled is not None)

    event.listen(database.engine, "before_cursor_execute", record)
    yield seen
    event.remove(database.engine, "before_cursor_execute", record)


def normal(value: Any) -> Any:
    # SQLite hands a timezone-aware column back naive (in UTC): compare instants.
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def test_row_upsert_stores_what_core_stores_for_typed_columns_in_any_order(
    database: Database, compiled_by: list[bool]
) -> None:
    core, fast = typed(database, "by_core"), typed(database, "by_driver")
    ref = uuid.uuid4()
    values = {
        "id": 1,
        "at": WHEN,
        "ref": ref,
        "doc": {"tags": ["a", "b"], "n": 2},
        "price": Decimal("12.50"),
        "label": "one",
    }
    columns = ["label", "price", "doc", "ref", "at", "id"]  # not the table's order
    write = RowUpsert(fast, columns)
    with database.begin() as conn:
        upsert(conn, core, [values])
        write(conn, [tuple(values[c] for c in columns)])
    assert compiled_by == [True, False]
    first = stored(database, core)
    assert stored(database, fast) == first
    assert [normal(v) for v in first[1]] == [WHEN, ref, values["doc"], Decimal("12.50"), "one"]
    with database.begin() as conn:  # a second write of the key updates it, with NULLs too
        upsert(conn, core, [{**values, "label": None, "doc": [1]}])
        write(conn, [("changed", None, [1], ref, WHEN, 1)])
    assert stored(database, core)[1][2:] == ([1], Decimal("12.50"), None)
    assert stored(database, fast)[1][2:] == ([1], None, "changed")


def test_row_upsert_refuses_a_value_its_column_type_cannot_take_as_core_does(
    database: Database,
) -> None:
    table = typed(database, "refusing")
    write = RowUpsert(table, ["id", "ref"])
    with pytest.raises(StatementError) as by_core, database.begin() as conn:
        upsert(conn, table, [{"id": 1, "ref": "not a uuid object"}])
    with pytest.raises(StatementError) as by_driver, database.begin() as conn:
        write(conn, [(1, "not a uuid object")])
    # the same kind of error (SQLite: the type's converter; PostgreSQL: the server's DataError)
    assert type(by_driver.value) is type(by_core.value)
    assert "not a uuid object" in str(by_driver.value)
    assert stored(database, table) == {}


def test_row_upsert_fills_python_side_defaults_through_core(
    database: Database, compiled_by: list[bool]
) -> None:
    table = typed(database, "defaulted", default=lambda: "made by the default")
    write = RowUpsert(table, ["id", "at"])
    with database.begin() as conn:
        write(conn, [(1, WHEN), (2, None)])
    assert compiled_by == [True]
    labels = {k: v[-1] for k, v in stored(database, table).items()}
    assert labels == {1: "made by the default", 2: "made by the default"}


def test_row_upsert_of_key_columns_only_leaves_the_row_alone(database: Database) -> None:
    table = typed(database, "keys_only")
    with database.begin() as conn:
        upsert(conn, table, [{"id": 1, "label": "kept"}])
        RowUpsert(table, ["id"])(conn, [(1,), (2,)])
    assert {k: v[-1] for k, v in stored(database, table).items()} == {1: "kept", 2: None}
