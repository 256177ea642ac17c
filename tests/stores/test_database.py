"""Database: URLs, the SQLite settings, and creating only the tables that are missing."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Connection, Integer, MetaData, Table, event, inspect, text

from ferryman.errors import ConfigError
from ferryman.stores import OFFSETS_TABLE, Database


def test_sqlite_gets_wal_a_busy_timeout_foreign_keys_and_its_directory(tmp_path: Path) -> None:
    path = tmp_path / "not" / "yet" / "there.db"
    db = Database(f"sqlite:///{path}")
    with db.begin() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    assert path.exists()
    db.dispose()


def test_sqlite_savepoints_roll_back_only_their_part(tmp_path: Path) -> None:
    # pysqlite's own transaction handling breaks SAVEPOINT; the mirror's isolation needs it.
    db = Database(f"sqlite:///{tmp_path / 's.db'}")
    t = Table("t", db.metadata, Column("id", Integer, primary_key=True))
    db.create_missing()
    with db.begin() as conn:
        conn.execute(t.insert(), [{"id": 1}])
        savepoint = conn.begin_nested()
        conn.execute(t.insert(), [{"id": 2}])
        savepoint.rollback()
        conn.execute(t.insert(), [{"id": 3}])
    with db.begin() as conn:
        assert conn.execute(t.select()).scalars().all() == [1, 3]
    db.dispose()


def test_create_missing_creates_only_what_is_missing(database: Database) -> None:
    assert database.create_missing() == [OFFSETS_TABLE]
    other = MetaData()
    Table("items", other, Column("id", Integer, primary_key=True))
    other.create_all(database.engine)
    Table(
        "items",
        database.metadata,
        Column("id", Integer, primary_key=True),
        Column("added_later", Integer),
    )
    assert database.create_missing() == []
    with database.begin() as conn:
        columns = {c["name"] for c in inspect(conn).get_columns("items")}
        assert columns == {"id"}  # altering an existing table is a migration's job
        conn.execute(text("SELECT 1"))
    assert database.create_missing() == []


def test_processes_starting_at_once_create_the_missing_tables_once(database_url: str) -> None:
    """Instances of a service starting together on one database all create its missing
    tables: on PostgreSQL, unserialized, one of them failed on a unique violation in the
    catalog most of the time (and that instance never started)."""
    for _ in range(10):
        name = f"items_{uuid.uuid4().hex[:8]}"
        created, errors = start_together(database_url, name, instances=4)
        assert errors == []
        made = sorted(n for names in created for n in names)
        assert made == sorted({*made}), "a table was created twice"
        assert {name, f"{name}_theirs"} <= set(made)


def start_together(
    database_url: str, name: str, instances: int
) -> tuple[list[list[str]], list[BaseException]]:
    """What ``create_missing`` returned in each instance and what it raised, the instances
    calling it at once for table ``name`` and ``<name>_theirs`` (on a MetaData of its own)."""
    theirs = Table(f"{name}_theirs", MetaData(), Column("id", Integer, primary_key=True))
    start = threading.Barrier(instances)
    created: list[list[str]] = []
    errors: list[BaseException] = []

    def instance() -> None:
        db = Database(database_url)
        mine = Table(name, db.metadata, Column("id", Integer, primary_key=True))
        try:
            start.wait(10)
            created.append(db.create_missing([db.offsets.table, mine, theirs]))
        except BaseException as exc:
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=instance) for _ in range(instances)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return created, errors


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("not a url", "not an SQLAlchemy URL"),
        ("mysql://u@h/db", "mysql is not supported"),
        ("postgresql+psycopg2://u@h/db", "through psycopg 3"),
    ],
)
def test_bad_urls_say_what_to_write(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        Database(url)


def test_the_repr_hides_the_password() -> None:
    assert "secret" not in repr(Database("postgresql+psycopg://u:secret@h/db"))


def test_sqlite_transactions_take_the_write_lock_at_begin(tmp_path: Path) -> None:
    # BEGIN IMMEDIATE: a transaction waits for the lock up front (busy timeout) instead of
    # failing at its first write when another process committed after its first read.
    path = tmp_path / "locks.db"
    db = Database(f"sqlite:///{path}")
    Table("t", db.metadata, Column("id", Integer, primary_key=True))
    db.create_missing()
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with db.begin() as conn:
            conn.execute(text("SELECT 1"))
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("INSERT INTO t VALUES (1)")
        other.execute("INSERT INTO t VALUES (1)")
    finally:
        other.close()
        db.dispose()


def test_a_read_neither_takes_nor_waits_for_the_write_lock(database: Database) -> None:
    """Lag, stored offsets on assignment and reconcile read while a mirror's transaction
    writes: on SQLite a read begins deferred, so it sees the last commit at once instead of
    waiting for the writer (the busy timeout)."""
    t = Table("reads", database.metadata, Column("id", Integer, primary_key=True))
    database.create_missing()
    with database.begin() as conn:
        conn.execute(t.insert(), [{"id": 1}])
    with database.begin() as writer:
        writer.execute(t.insert(), [{"id": 2}])
        started = time.monotonic()
        with database.read() as conn:
            assert conn.execute(t.select()).scalars().all() == [1]
        assert time.monotonic() - started < 5  # not the 30 s busy timeout


def test_threads_take_turns_to_write_to_sqlite_and_not_to_postgresql(database: Database) -> None:
    import threading

    entered = threading.Event()
    with database.turn():
        # A second writer of the process waits for the turn on SQLite (its busy handler would
        # sleep instead); PostgreSQL takes writers in parallel.
        def second() -> None:
            with database.turn():
                entered.set()

        waiter = threading.Thread(target=second, daemon=True)
        waiter.start()
        assert entered.wait(0.5) == (database.dialect == "postgresql")
    assert entered.wait(10)
    waiter.join(10)


def _grouped_in_threads(
    database: Database, works: list[Any]
) -> tuple[list[Any], list[BaseException | None], int]:
    """Run each of ``works`` through ``grouped`` in a thread of its own, all submitted while the
    turn is held (so on SQLite they wait together); their results, errors, and the commits."""
    commits = 0

    def count(_conn: Any) -> None:
        nonlocal commits
        commits += 1

    event.listen(database.engine, "commit", count)
    results: list[Any] = [None] * len(works)
    errors: list[BaseException | None] = [None] * len(works)

    def run(i: int) -> None:
        try:
            results[i] = database.grouped(works[i])
        except BaseException as exc:
            errors[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(works))]
    with database.turn():
        for t in threads:
            t.start()
        if database.dialect == "sqlite":  # each waits for the turn, its work queued
            deadline = time.monotonic() + 10
            while len(database._waiting) < len(works) and time.monotonic() < deadline:
                time.sleep(0.005)
            assert len(database._waiting) == len(works)
    for t in threads:
        t.join(10)
    event.remove(database.engine, "commit", count)
    return results, errors, commits


def _table(database: Database) -> Table:
    t = Table(
        f"g_{uuid.uuid4().hex[:8]}", database.metadata, Column("id", Integer, primary_key=True)
    )
    database.create_missing([t])
    return t


def _ids(database: Database, t: Table) -> list[int]:
    with database.read() as conn:
        return sorted(conn.execute(t.select()).scalars())


def _insert(t: Table, i: int, raises: BaseException | None = None) -> Any:
    """A work that inserts row ``i`` into ``t`` and returns ``i * 10``, or then raises."""

    def work(conn: Connection) -> int:
        conn.execute(t.insert(), [{"id": i}])
        if raises is not None:
            raise raises
        return i * 10

    return work


def test_sqlite_writers_waiting_for_their_turn_share_one_transaction(database: Database) -> None:
    t = _table(database)

    works = [_insert(t, i) for i in range(4)]
    results, errors, commits = _grouped_in_threads(database, works)
    assert errors == [None] * 4
    assert results == [0, 10, 20, 30]  # each caller gets its own work's result
    assert _ids(database, t) == [0, 1, 2, 3]
    # SQLite: one commit for the four (group commit); PostgreSQL: a transaction each.
    assert commits == (1 if database.dialect == "sqlite" else 4)


def test_a_grouped_work_that_raises_rolls_back_alone(database: Database) -> None:
    t = _table(database)

    works = [_insert(t, 1), _insert(t, 2, ValueError("work 2 fails")), _insert(t, 3)]
    _, errors, _ = _grouped_in_threads(database, works)
    assert [type(e) for e in errors] == [type(None), ValueError, type(None)]
    assert "work 2 fails" in str(errors[1])
    assert _ids(database, t) == [1, 3]  # its row rolled back, the others' committed


def test_a_failed_group_commit_fails_every_work_of_the_group(database: Database) -> None:
    t = _table(database)

    def refuse(_conn: Any) -> None:
        raise RuntimeError("the disk is full")

    event.listen(database.engine, "commit", refuse)
    try:
        _, errors, _ = _grouped_in_threads(database, [_insert(t, 1), _insert(t, 2)])
    finally:
        event.remove(database.engine, "commit", refuse)
    assert all(isinstance(e, RuntimeError) and "disk is full" in str(e) for e in errors)
    assert _ids(database, t) == []


def test_a_group_whose_transaction_sqlite_ended_fails_every_work(tmp_path: Path) -> None:
    # SQLite itself rolls a transaction back on some errors (a full disk, an I/O error); the
    # works applied before are undone then, and must not be reported applied, nor may the
    # works after commit on their own. (PostgreSQL runs no groups.)
    database = Database(f"sqlite:///{tmp_path / 'g.db'}")
    t = _table(database)

    def full_disk(conn: Connection) -> None:
        conn.exec_driver_sql("ROLLBACK")  # what SQLite does on SQLITE_FULL
        raise OSError("database or disk is full")

    _, errors, _ = _grouped_in_threads(database, [_insert(t, 1), full_disk, _insert(t, 3)])
    assert all(e is not None for e in errors), errors
    assert _ids(database, t) == []
    database.dispose()


def test_a_work_raising_a_base_exception_fails_alone(database: Database) -> None:
    t = _table(database)

    works = [_insert(t, 1), _insert(t, 2, SystemExit("work 2 exits")), _insert(t, 3)]
    _, errors, _ = _grouped_in_threads(database, works)
    assert [type(e) for e in errors] == [type(None), SystemExit, type(None)]
    assert _ids(database, t) == [1, 3]  # raised in its own caller's thread only


def test_a_work_taken_by_a_group_is_waited_for_past_the_turns_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A thread whose wait for the turn times out goes ahead; a caller whose work it took must
    # still get its work's own result, after the work ran, not an empty success.
    import ferryman.stores.database as database_module

    monkeypatch.setattr(database_module, "SQLITE_BUSY_TIMEOUT_MS", 200)
    database = Database(f"sqlite:///{tmp_path / 't.db'}")
    t = _table(database)
    ran: dict[str, float] = {}
    returned: dict[str, tuple[Any, float]] = {}
    start = time.monotonic()

    def slow(name: str, i: int) -> Any:
        def work(conn: Connection) -> str:
            conn.execute(t.insert(), [{"id": i}])
            time.sleep(0.4)
            ran[name] = time.monotonic() - start
            return f"result of {name}"

        return work

    def caller(name: str, i: int, delay: float) -> None:
        time.sleep(delay)
        returned[name] = (database.grouped(slow(name, i)), time.monotonic() - start)

    threads = [
        threading.Thread(target=caller, args=(name, i, i * 0.05), daemon=True)
        for i, name in enumerate(["first", "second", "third"])
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert {name: got for name, (got, _) in returned.items()} == {
        name: f"result of {name}" for name in ("first", "second", "third")
    }
    assert all(returned[name][1] >= ran[name] for name in ran)
    assert _ids(database, t) == [0, 1, 2]
    database.dispose()
