"""JoinedTable on SQLite and PostgreSQL: each source writes only its columns, keys mapped from
values (and found again for tombstones), child rows, the row's deletion policy, and dirty marks
and offsets in the same transaction as the writes."""

from __future__ import annotations

import enum
import json
from typing import Any

import pytest
from sqlalchemy import JSON, BigInteger, Column, MetaData, Table, Text, select

from ferryman.errors import ConfigError, StoreError
from ferryman.stores import DIRTY_TABLE, Database, JoinedTable, MirrorRecord

from .catalog_join import GROUP, Assignment, Line, Product, Sources, catalog


@pytest.fixture
def joined(database: Database) -> JoinedTable:
    return catalog(database)


def rows(database: Database, table: Table) -> dict[Any, tuple[Any, ...]]:
    with database.engine.connect() as conn:
        return {r[0]: tuple(r[1:]) for r in conn.execute(select(table))}


def dirty(database: Database) -> dict[Any, int]:
    """Marked keys of product_view -> version."""
    d = database.metadata.tables[DIRTY_TABLE]
    with database.engine.connect() as conn:
        return {json.loads(k): v for k, v in conn.execute(select(d.c.key, d.c.version))}


def apply(database: Database, joined: JoinedTable, *records: Any) -> Any:
    with database.begin() as conn:
        return joined.apply(conn, records, GROUP)


def test_each_source_writes_only_its_columns(database: Database, joined: JoinedTable) -> None:
    src = Sources()
    apply(database, joined, src.rec("products", 1, Product(1, "lamp", 30)))
    apply(database, joined, src.rec("assignments", "a1", Assignment("a1", 1, "lighting")))
    assert rows(database, joined.table) == {1: ("lamp", 30, "lighting")}
    apply(database, joined, src.rec("products", 1, Product(1, "lamp", 35)))
    assert rows(database, joined.table) == {1: ("lamp", 35, "lighting")}


def test_a_mapped_source_tombstone_clears_the_row_it_wrote(
    database: Database, joined: JoinedTable
) -> None:
    src = Sources()
    apply(
        database,
        joined,
        src.rec("products", 1, Product(1, "lamp", 30)),
        src.rec("assignments", "a1", Assignment("a1", 1, "lighting")),
    )
    # The tombstone carries no product_id: ferryman_join_keys remembers which row a1 wrote.
    apply(database, joined, src.rec("assignments", "a1", None))
    assert rows(database, joined.table) == {1: ("lamp", 30, None)}


def test_a_source_moving_to_another_row_clears_the_old_one(
    database: Database, joined: JoinedTable
) -> None:
    src = Sources()
    apply(
        database,
        joined,
        src.rec("products", 1, Product(1, "lamp", 30)),
        src.rec("products", 2, Product(2, "desk", 90)),
        src.rec("assignments", "a1", Assignment("a1", 1, "lighting")),
    )
    apply(database, joined, src.rec("assignments", "a1", Assignment("a1", 2, "furniture")))
    assert rows(database, joined.table) == {1: ("lamp", 30, None), 2: ("desk", 90, "furniture")}
    assert set(dirty(database)) == {1, 2}


def test_children_are_written_moved_and_deleted(database: Database, joined: JoinedTable) -> None:
    src = Sources()
    lines = database.metadata.tables["product_lines"]
    apply(
        database,
        joined,
        src.rec("products", 1, Product(1, "lamp", 30)),
        src.rec("lines", "l1", Line("l1", 1, 2)),
        src.rec("lines", "l2", Line("l2", 1, 5)),
    )
    assert rows(database, lines) == {"l1": (1, 2), "l2": (1, 5)}
    apply(database, joined, src.rec("lines", "l2", Line("l2", 2, 5)))
    apply(database, joined, src.rec("lines", "l1", None))
    assert rows(database, lines) == {"l2": (2, 5)}
    with database.engine.connect() as conn:
        read = joined.read(conn, [1, 2])
    assert read[1].children == {}
    assert read[1].state == "complete"
    assert read[2].children["product_lines"] == [{"line_id": "l2", "product_id": 2, "qty": 5}]
    assert read[2].state == "deleted"  # lines alone, no product: the owner's part is missing


def test_owner_tombstone_keeps_other_parts_until_the_row_is_empty(
    database: Database, joined: JoinedTable
) -> None:
    src = Sources()
    apply(
        database,
        joined,
        src.rec("products", 1, Product(1, "lamp", 30)),
        src.rec("assignments", "a1", Assignment("a1", 1, "lighting")),
    )
    apply(database, joined, src.rec("products", 1, None))
    assert rows(database, joined.table) == {1: (None, None, "lighting")}
    with database.engine.connect() as conn:
        assert joined.read(conn, [1])[1].state == "deleted"
    # The product comes back: the category it had waited in the row.
    apply(database, joined, src.rec("products", 1, Product(1, "lamp", 31)))
    assert rows(database, joined.table) == {1: ("lamp", 31, "lighting")}
    apply(database, joined, src.rec("products", 1, None), src.rec("assignments", "a1", None))
    assert rows(database, joined.table) == {}


def test_a_row_with_children_is_kept_until_they_go(database: Database, joined: JoinedTable) -> None:
    src = Sources()
    apply(database, joined, src.rec("lines", "l1", Line("l1", 7, 1)))
    assert rows(database, joined.table) == {7: (None, None, None)}
    apply(database, joined, src.rec("lines", "l1", None))
    assert rows(database, joined.table) == {}


def test_required_part_missing_is_incomplete(database: Database) -> None:
    joined = catalog(database, required_category=True)
    apply(database, joined, Sources().rec("products", 1, Product(1, "lamp", 30)))
    with database.engine.connect() as conn:
        assert joined.read(conn, [1])[1].state == "incomplete"


def test_every_write_marks_its_key_with_a_new_version(
    database: Database, joined: JoinedTable
) -> None:
    src = Sources()
    apply(database, joined, src.rec("products", 1, Product(1, "lamp", 30)))
    assert dirty(database) == {1: 1}
    apply(
        database,
        joined,
        src.rec("products", 1, Product(1, "lamp", 31)),
        src.rec("assignments", "a1", Assignment("a1", 1, "x")),
    )
    assert dirty(database) == {1: 2}  # one batch, one mark


def test_marks_and_offsets_commit_with_the_rows(database: Database, joined: JoinedTable) -> None:
    src = Sources()
    record = src.rec("products", 1, Product(1, "lamp", 30))

    class Rollback(Exception):
        pass

    def apply_then_fail() -> None:
        with database.begin() as conn:
            joined.apply(conn, [record], GROUP)
            raise Rollback

    with pytest.raises(Rollback):
        apply_then_fail()
    assert rows(database, joined.table) == {}
    assert dirty(database) == {}
    first = apply(database, joined, record)
    assert first.applied == 1
    assert first.offsets == {record.topic_partition: 1}
    again = apply(database, joined, record)  # redelivered: skipped, no new mark
    assert (again.applied, again.skipped) == (0, 1)
    assert dirty(database) == {1: 1}


def test_a_value_without_its_key_field_is_poisoned_alone(
    database: Database, joined: JoinedTable
) -> None:
    src = Sources()
    bad = src.rec("assignments", "a9", {"id": "a9", "category": "x"})  # no product_id
    applied = apply(database, joined, src.rec("products", 1, Product(1, "lamp", 30)), bad)
    assert [p.record for p in applied.poisoned] == [bad]
    assert rows(database, joined.table) == {1: ("lamp", 30, None)}


def test_records_of_an_undeclared_topic_are_refused(
    database: Database, joined: JoinedTable
) -> None:
    with pytest.raises(StoreError, match="not one of its parts"):
        apply(database, joined, Sources().rec("prices", 1, {}))


def test_declarations_are_checked() -> None:
    metadata = MetaData()
    table = Table(
        "t",
        metadata,
        Column("id", BigInteger, primary_key=True),
        Column("a", Text),
        Column("b", Text),
    )
    joined = JoinedTable(Database("sqlite://", metadata=metadata), table)
    joined.part("x", ["a"])
    with pytest.raises(ConfigError, match="already belong to another part"):
        joined.part("y", ["a"])
    with pytest.raises(ConfigError, match="names nope"):
        joined.part("y", ["nope"])
    with pytest.raises(ConfigError, match="declared as a part twice"):
        joined.part("x", ["b"])
    with pytest.raises(ConfigError, match="one string"):
        joined.part("z", "b")


def test_unkeyed_events_write_by_a_mapped_key(database: Database) -> None:
    """Event records without a key (from two partitions, same offset) each write their row."""
    table = Table(
        "last_seen",
        database.metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=False),
        Column("page", Text),
    )
    joined = JoinedTable(database, table)
    joined.part("visits", ["page"], key="user")
    database.create_missing()
    visits = [
        MirrorRecord("visits", 0, 5, None, {"user": 1, "page": "/a"}),
        MirrorRecord("visits", 1, 5, None, {"user": 2, "page": "/b"}),
    ]
    apply(database, joined, *visits)
    assert rows(database, table) == {1: ("/a",), 2: ("/b",)}


class Tier(enum.Enum):
    GOLD = 1


def test_values_are_stored_as_their_columns_hold_them(database: Database) -> None:
    """An enum goes in as its symbol, a nested model or list as JSON."""
    table = Table(
        "profile",
        database.metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=False),
        Column("tier", Text),
        Column("tags", JSON),
    )
    joined = JoinedTable(database, table)
    joined.part("tiers", ["tier", "tags"])
    database.create_missing()
    apply(database, joined, Sources().rec("tiers", 1, {"tier": Tier.GOLD, "tags": ("a", "b")}))
    assert rows(database, table) == {1: ("GOLD", ["a", "b"])}
