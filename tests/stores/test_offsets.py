"""OffsetStore: load and save in the caller's transaction, as an upsert, per group."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, Integer, Table

from ferryman.errors import StoreError
from ferryman.records import TopicPartition
from ferryman.stores import Database

A0, A1, B0 = TopicPartition("a", 0), TopicPartition("a", 1), TopicPartition("b", 0)


def test_offsets_round_trip_and_a_save_overwrites(database: Database) -> None:
    database.create_missing()
    with database.begin() as conn:
        assert database.offsets.load(conn, "g", [A0, A1, B0]) == {}
        database.offsets.save(conn, "g", {A0: 5, B0: 1}, {A0: 1000})
    with database.begin() as conn:
        assert database.offsets.load(conn, "g", [A0, A1, B0]) == {A0: 5, B0: 1}
        database.offsets.save(conn, "g", {A0: 9, A1: 3}, {A1: 2000})
        database.offsets.save(conn, "h", {A0: 100})
    with database.begin() as conn:
        assert database.offsets.load(conn, "g", [A0, A1, B0]) == {A0: 9, A1: 3, B0: 1}
        assert database.offsets.load(conn, "h", [A0, A1], lock=True) == {A0: 100}
        # a save without a timestamp keeps the one stored before
        assert database.offsets.timestamps(conn, "g") == {A0: 1000, A1: 2000}
        assert database.offsets.load(conn, "g", []) == {}


def test_offsets_commit_and_roll_back_with_the_callers_rows(database: Database) -> None:
    items = Table("items", database.metadata, Column("id", Integer, primary_key=True))
    database.create_missing()

    def write_then_fail() -> None:
        with database.begin() as conn:
            conn.execute(items.insert(), [{"id": 1}])
            database.offsets.save(conn, "g", {A0: 1})
            raise RuntimeError("the handler failed after writing")

    with pytest.raises(RuntimeError):
        write_then_fail()
    with database.begin() as conn:
        assert database.offsets.load(conn, "g", [A0]) == {}
        assert conn.execute(items.select()).all() == []
        conn.execute(items.insert(), [{"id": 1}])
        database.offsets.save(conn, "g", {A0: 1})
    with database.begin() as conn:
        assert database.offsets.load(conn, "g", [A0]) == {A0: 1}
        assert conn.execute(items.select()).scalars().all() == [1]


def test_a_save_needs_a_group(database: Database) -> None:
    database.create_missing()
    with database.begin() as conn, pytest.raises(StoreError, match="consumer group"):
        database.offsets.save(conn, "", {A0: 1})
