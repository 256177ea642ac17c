"""Dirty tracking for joined tables: ``ferryman_dirty`` holds the keys changed since they were
last published, with a version that every write bumps, so the republisher clears a mark only
when no newer write came; keys are stored as JSON text."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    Double,
    MetaData,
    String,
    Table,
    Text,
    any_,
    bindparam,
)
from sqlalchemy.dialects import postgresql, sqlite

from ferryman.stores.tables import jsonable

DIRTY_TABLE = "ferryman_dirty"


def dirty_table(metadata: MetaData) -> Table:
    """``ferryman_dirty``: the keys of joined tables changed since they were last published."""
    if DIRTY_TABLE in metadata.tables:
        return metadata.tables[DIRTY_TABLE]
    return Table(
        DIRTY_TABLE,
        metadata,
        Column("joined_table", String(255), primary_key=True),
        Column("key", Text, primary_key=True),  # the table key as JSON
        Column("version", BigInteger, nullable=False),  # +1 on every write to the key
        Column("marked_at", Double, nullable=False),  # first unpublished write (epoch seconds)
        Column("changed_at", Double, nullable=False),  # last write, for the debounce
        Column("leased_until", Double, nullable=True),  # a republisher is publishing the key
        Column("lease_owner", String(64), nullable=True),
        comment="ferryman: keys of joined tables waiting to be republished",
    )


def key_text(key: Any) -> str:
    """A table key as the JSON text ``ferryman_dirty`` and ``ferryman_join_keys`` store."""
    if type(key) is int:  # the common key, without the encoder's cost (a third of a republish)
        return str(key)
    return json.dumps(jsonable(key), sort_keys=True)


def in_values(conn: Connection, column: Any, values: Sequence[Any]) -> ColumnElement[bool]:
    """``column IN values``; on PostgreSQL ``= ANY(array)``, one parameter whatever the count
    (an expanded IN of thousands of parameters costs more to render than to run)."""
    if conn.dialect.name == "postgresql":
        array = bindparam(None, list(values), type_=postgresql.ARRAY(column.type))
        return cast("ColumnElement[bool]", column == any_(array))
    return cast("ColumnElement[bool]", column.in_(values))


def mark_dirty(conn: Connection, dirty: Table, joined: str, keys: Iterable[Any]) -> None:
    """Mark ``keys`` of table ``joined`` as changed (version + 1), in ``conn``'s transaction."""
    now = time.time()
    rows = [
        {"joined_table": joined, "key": k, "version": 1, "marked_at": now, "changed_at": now}
        for k in sorted({key_text(k) for k in keys})
    ]
    if not rows:
        return
    stmt: Any = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(dirty)
    stmt = stmt.on_conflict_do_update(
        index_elements=["joined_table", "key"],
        set_={"version": dirty.c.version + 1, "changed_at": stmt.excluded.changed_at},
    )
    conn.execute(stmt, rows)
