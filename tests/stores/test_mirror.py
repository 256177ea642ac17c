"""Mirror.apply on SQLite and PostgreSQL: upserts, tombstones, compaction, offsets in the same
transaction, redelivery, and the isolation of poisoned records."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import (
    CheckConstraint,
    Column,
    Connection,
    Integer,
    MetaData,
    Table,
    Text,
    event,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError, StatementError

import ferryman as fm
from ferryman.errors import StoreError
from ferryman.records import TopicPartition
from ferryman.stores import Database, Mirror, MirrorRecord

GROUP = "orders"


@dataclass
class Customer:
    id: int
    name: str
    email: str | None = None


customers = fm.EntityTopic("customers", Customer, key="id")


def rec(offset: int, key: int, value: Any, *, partition: int = 0, ts: int = 0) -> MirrorRecord:
    return MirrorRecord("customers", partition, offset, key, value, ts or 1_000 + offset)


def rows(db: Database, table: Table) -> dict[Any, tuple[Any, ...]]:
    with db.engine.connect() as conn:
        return {r[0]: tuple(r[1:]) for r in conn.execute(select(table))}


@pytest.fixture
def mirror(database: Database) -> Mirror:
    m = Mirror(database, customers)
    database.create_missing()
    return m


@pytest.fixture
def statements(database: Database) -> Iterator[list[str]]:
    """The SQL statements the engine runs, first word upper-cased (INSERT, DELETE, ...)."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement.split(None, 1)[0].upper())

    event.listen(database.engine, "before_cursor_execute", record)
    yield seen
    event.remove(database.engine, "before_cursor_execute", record)


def test_upserts_inserts_then_updates_and_tombstones_delete(
    database: Database, mirror: Mirror
) -> None:
    with database.begin() as conn:
        mirror.apply(conn, [rec(0, 1, Customer(1, "Ada")), rec(1, 2, Customer(2, "Bob"))], GROUP)
    assert rows(database, mirror.table) == {1: ("Ada", None), 2: ("Bob", None)}
    with database.begin() as conn:
        applied = mirror.apply(conn, [rec(2, 1, Customer(1, "Ada", "a@x")), rec(3, 2, None)], GROUP)
    assert applied.applied == 2
    assert rows(database, mirror.table) == {1: ("Ada", "a@x")}


def test_a_batch_is_compacted_to_the_last_change_per_key_in_one_upsert_and_one_delete(
    database: Database, mirror: Mirror, statements: list[str]
) -> None:
    with database.begin() as conn:
        mirror.apply(conn, [rec(0, 3, Customer(3, "old"))], GROUP)
    batch = [
        rec(1, 1, Customer(1, "v1")),
        rec(2, 2, None),  # a tombstone, then a value: the key ends up present
        rec(3, 1, Customer(1, "v2")),
        rec(4, 3, Customer(3, "changed")),
        rec(5, 2, Customer(2, "back")),
        rec(6, 3, None),  # a value, then a tombstone: the key ends up deleted
        rec(7, 1, Customer(1, "v3")),
    ]
    statements.clear()
    with database.begin() as conn:
        applied = mirror.apply(conn, batch, GROUP)
    assert applied.applied == 7
    assert rows(database, mirror.table) == {1: ("v3", None), 2: ("back", None)}
    # one offsets read, one upsert of the rows, one delete, one upsert of the offsets
    writes = [s for s in statements if s in ("INSERT", "DELETE", "UPDATE")]
    assert writes == ["INSERT", "DELETE", "INSERT"]


def test_offsets_are_saved_with_the_rows_and_a_rollback_undoes_both(
    database: Database, mirror: Mirror
) -> None:
    tp0, tp1 = TopicPartition("customers", 0), TopicPartition("customers", 1)

    def apply_then_fail() -> None:
        with database.begin() as conn:
            mirror.apply(conn, [rec(0, 1, Customer(1, "Ada"))], GROUP)
            raise RuntimeError("the caller failed after apply, before commit")

    with pytest.raises(RuntimeError):
        apply_then_fail()
    with database.begin() as conn:
        assert database.offsets.load(conn, GROUP, [tp0]) == {}
    assert rows(database, mirror.table) == {}

    with database.begin() as conn:
        applied = mirror.apply(
            conn,
            [
                rec(5, 1, Customer(1, "Ada"), ts=111),
                rec(9, 2, Customer(2, "Bob"), partition=1, ts=222),
            ],
            GROUP,
        )
    assert applied.offsets == {tp0: 6, tp1: 10}
    assert applied.timestamps == {tp0: 111, tp1: 222}
    with database.begin() as conn:
        assert database.offsets.load(conn, GROUP, [tp0, tp1]) == {tp0: 6, tp1: 10}
        assert database.offsets.timestamps(conn, GROUP) == {tp0: 111, tp1: 222}
        assert database.offsets.load(conn, "another-group", [tp0, tp1]) == {}


def test_records_below_the_stored_offsets_are_skipped_so_a_redelivery_changes_nothing(
    database: Database, mirror: Mirror
) -> None:
    first = [rec(0, 1, Customer(1, "v1")), rec(1, 2, Customer(2, "Bob"))]
    with database.begin() as conn:
        mirror.apply(conn, first, GROUP)
    with database.begin() as conn:
        mirror.apply(conn, [rec(2, 1, Customer(1, "v2")), rec(3, 2, None)], GROUP)
    with database.begin() as conn:
        again = mirror.apply(conn, [*first, rec(4, 3, Customer(3, "new"))], GROUP)
    assert (again.applied, again.skipped) == (1, 2)
    assert rows(database, mirror.table) == {1: ("v2", None), 3: ("new", None)}


def test_a_failing_transform_poisons_only_its_record(database: Database) -> None:
    def transform(c: Customer) -> dict[str, Any] | None:
        if c.name == "bad":
            raise ValueError("cannot map bad")
        if c.name == "gone":
            return None  # the transform deletes the key's row
        return {"id": c.id, "name": c.name.upper(), "email": None}

    mirror = Mirror(database, customers, transform=transform)
    database.create_missing()
    with database.begin() as conn:
        mirror.apply(conn, [rec(0, 4, Customer(4, "dave"))], GROUP)
    batch = [
        rec(1, 1, Customer(1, "ada")),
        rec(2, 2, Customer(2, "bad")),
        rec(3, 3, Customer(3, "cy")),
        rec(4, 4, Customer(4, "gone")),
    ]
    with database.begin() as conn:
        applied = mirror.apply(conn, batch, GROUP)
    assert applied.applied == 3
    assert [p.record.offset for p in applied.poisoned] == [2]
    assert isinstance(applied.poisoned[0].error, ValueError)
    assert rows(database, mirror.table) == {1: ("ADA", None), 3: ("CY", None)}
    # the poisoned record's offset is saved too: the caller dead-letters it before committing
    assert applied.offsets == {TopicPartition("customers", 0): 5}


def test_rows_the_database_refuses_are_isolated_and_the_rest_applied(database: Database) -> None:
    table = Table(
        "strict_customers",
        database.metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("name", Text, nullable=False),
        Column("email", Text),
        CheckConstraint("length(name) < 10", name="short_names"),
    )
    mirror = Mirror(database, customers, into=table)
    database.create_missing()
    batch = [rec(i, i, Customer(i, f"c{i}")) for i in range(10)]
    batch[3] = rec(3, 3, Customer(3, "far too long a name"))
    batch[8] = rec(8, 8, Customer(8, "also much too long"))
    with database.begin() as conn:
        applied = mirror.apply(conn, batch, GROUP)
    assert applied.applied == 8
    assert [p.record.offset for p in applied.poisoned] == [3, 8]
    assert all(isinstance(p.error, IntegrityError) for p in applied.poisoned)
    assert sorted(rows(database, table)) == [0, 1, 2, 4, 5, 6, 7, 9]
    assert applied.timestamps == {TopicPartition("customers", 0): batch[9].timestamp}


def test_the_last_record_of_a_partition_poisoned_leaves_the_timestamp_at_the_one_before(
    database: Database, mirror: Mirror
) -> None:
    unstorable = Customer(2, {"a dict": "in a text column"})  # type: ignore[arg-type]
    batch = [rec(0, 1, Customer(1, "ok"), ts=50), rec(1, 2, unstorable, ts=60)]
    with database.begin() as conn:
        applied = mirror.apply(conn, batch, GROUP)
    assert [p.record.offset for p in applied.poisoned] == [1]
    assert applied.timestamps == {TopicPartition("customers", 0): 50}


def test_a_database_failure_that_is_not_about_a_row_is_raised_not_blamed_on_records(
    database: Database, mirror: Mirror
) -> None:
    with database.begin() as conn:
        conn.execute(text("DROP TABLE customers"))
    with pytest.raises(StatementError, match="customers"), database.begin() as conn:
        mirror.apply(conn, [rec(0, 1, Customer(1, "Ada")), rec(1, 2, Customer(2, "Bob"))], GROUP)


def test_records_of_another_topic_are_refused(database: Database, mirror: Mirror) -> None:
    other = MirrorRecord("products", 0, 0, 1, Customer(1, "x"), 0)
    with pytest.raises(StoreError, match="given a record of 'products'"), database.begin() as conn:
        mirror.apply(conn, [other], GROUP)


def test_a_tombstone_for_a_missing_row_and_an_empty_batch_are_harmless(
    database: Database, mirror: Mirror
) -> None:
    with database.begin() as conn:
        assert mirror.apply(conn, [], GROUP).applied == 0
        assert mirror.apply(conn, [rec(0, 99, None)], GROUP).applied == 1
    assert rows(database, mirror.table) == {}


def test_apply_works_in_an_orm_session_transaction(database: Database, mirror: Mirror) -> None:
    with database.sessions.begin() as session:
        conn: Connection = session.connection()
        mirror.apply(conn, [rec(0, 1, Customer(1, "Ada"))], GROUP)
    assert rows(database, mirror.table) == {1: ("Ada", None)}


def test_a_second_table_for_the_same_name_is_refused(database: Database, mirror: Mirror) -> None:
    with pytest.raises(fm.errors.ConfigError, match="declared twice"):
        Mirror(database, customers)
    Mirror(database, customers, table="customers_again")
    assert "customers_again" in database.metadata.tables
    MetaData()  # a separate MetaData is the way to a second service database


@pytest.mark.parametrize(
    "bad_id",
    [2**70, "not a number"],
    ids=["int beyond 64 bits", "text in an integer key"],
)
def test_a_key_the_database_cannot_store_poisons_its_record(
    database: Database, mirror: Mirror, bad_id: Any
) -> None:
    batch = [
        rec(0, 1, Customer(1, "ok")),
        rec(1, 2, Customer(bad_id, "bad")),
        rec(2, 3, Customer(3, "ok")),
    ]
    with database.begin() as conn:
        applied = mirror.apply(conn, batch, GROUP)
    # SQLite too: an INTEGER key is the rowid, which takes integers only ("datatype mismatch")
    assert [p.record.offset for p in applied.poisoned] == [1]
    assert sorted(rows(database, mirror.table)) == [1, 3]


def test_a_transform_returning_what_the_table_cannot_take_poisons_its_record(
    database: Database,
) -> None:
    def transform(c: Customer) -> Any:
        if c.id == 1:
            return {"id": 1, "colour": "red"}
        if c.id == 2:
            return ["not", "a", "dict"]
        return {"name": c.name}  # the key column is filled in from the record's key

    mirror = Mirror(database, customers, transform=transform)
    database.create_missing()
    batch = [rec(0, 1, Customer(1, "a")), rec(1, 2, Customer(2, "b")), rec(2, 3, Customer(3, "c"))]
    with database.begin() as conn:
        applied = mirror.apply(conn, batch, GROUP)
    errors = [str(p.error) for p in applied.poisoned]
    assert "returned column(s) colour" in errors[0]
    assert "returned list" in errors[1]
    assert rows(database, mirror.table) == {3: ("c", None)}


def test_a_transform_giving_the_key_column_none_poisons_its_record(database: Database) -> None:
    """SQLite numbers a row itself when its INTEGER key is NULL: such a row must not be written
    under a made-up key, on either database."""
    mirror = Mirror(database, customers, transform=lambda c: {"id": None, "name": c.name})
    database.create_missing()
    with database.begin() as conn:
        applied = mirror.apply(conn, [rec(0, 7, Customer(7, "a"))], GROUP)
    assert [p.record.offset for p in applied.poisoned] == [0]
    assert "key column 'id' is None" in str(applied.poisoned[0].error)
    assert rows(database, mirror.table) == {}


def test_an_integer_key_is_the_rowid_on_sqlite(database: Database, mirror: Mirror) -> None:
    """A model's integer key is declared INTEGER on SQLite (one B-tree, the rowid's), BIGINT on
    PostgreSQL: no second index written on every upsert."""
    with database.begin() as conn:
        mirror.apply(
            conn, [rec(0, 2**62, Customer(2**62, "big")), rec(1, -5, Customer(-5, "neg"))], GROUP
        )
        declared = conn.dialect.type_compiler_instance.process(
            mirror.table.c.id.type.dialect_impl(conn.dialect)
        )
        if database.engine.dialect.name == "sqlite":
            assert declared == "INTEGER"
            stored = conn.execute(text("SELECT rowid, id FROM customers ORDER BY id")).all()
            assert [tuple(r) for r in stored] == [(-5, -5), (2**62, 2**62)]
            # no sqlite_autoindex: the key needs no index of its own
            assert conn.execute(text("PRAGMA index_list(customers)")).all() == []
        else:
            assert declared == "BIGINT"
    assert rows(database, mirror.table) == {2**62: ("big", None), -5: ("neg", None)}


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_second_consumer_of_a_partition_waits_for_the_first_and_skips_what_it_applied(
    database: Database, mirror: Mirror
) -> None:
    """A consumer that lost its partition without knowing it yet (a zombie) must not apply a
    batch twice: it waits for the first's partition lock, then sees the offsets moved (here
    the partition's first offsets, which no row lock could guard)."""
    # (SQLite serializes writers at BEGIN IMMEDIATE: test_database covers it.)
    batch = [rec(1, 1, Customer(1, "Ada")), rec(2, 2, Customer(2, "Bob"))]
    second: list[Any] = []
    with database.begin() as first:
        assert mirror.apply(first, batch, GROUP).applied == 2

        def zombie() -> None:
            with database.begin() as conn:
                second.append(mirror.apply(conn, batch, GROUP))

        thread = threading.Thread(target=zombie)
        thread.start()
        wait_until(lambda: lock_waiters(database) > 0, "the second consumer to wait for the lock")
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert (second[0].applied, second[0].skipped) == (0, 2)


def lock_waiters(database: Database) -> int:
    with database.engine.connect() as conn:
        query = "SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'advisory'"
        return int(conn.execute(text(query)).scalar_one())


def wait_until(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_a_catch_up_batch_larger_than_a_statement_can_bind_is_applied(
    database: Database, mirror: Mirror
) -> None:
    # PostgreSQL binds at most 65535 parameters per statement: the deletes go in chunks.
    n = 70_000
    with database.begin() as conn:
        created = mirror.apply(conn, [rec(i, i, Customer(i, "x")) for i in range(n)], GROUP)
        deleted = mirror.apply(conn, [rec(n + i, i, None) for i in range(n - 1)], GROUP)
    assert (created.applied, deleted.applied) == (n, n - 1)
    assert rows(database, mirror.table) == {n - 1: ("x", None)}
