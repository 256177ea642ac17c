"""One dialect upsert (``INSERT .. ON CONFLICT (primary key) DO UPDATE``) for SQLite and
PostgreSQL, the statement every store writes rows with."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Table, func
from sqlalchemy.dialects import postgresql, sqlite

from ferryman.errors import StoreError


def upsert(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    keep_when_null: Iterable[str] = (),
) -> None:
    """Insert ``rows`` (all with the same columns), updating the row already there on a primary
    key conflict. Only the given columns are updated, so rows may carry a part of the table's
    columns; a column in ``keep_when_null`` keeps its stored value when the new one is NULL."""
    if not rows:
        return
    name = conn.dialect.name
    if name == "postgresql":
        stmt: Any = postgresql.insert(table)
    elif name == "sqlite":
        stmt = sqlite.insert(table)
    else:
        raise StoreError(
            f"upserts into {table.name!r} need SQLite or PostgreSQL, not {name}; point the "
            "service's database at one of them"
        )
    keys = [c.name for c in table.primary_key.columns]
    if not keys:
        raise StoreError(
            f"table {table.name!r} has no primary key, so rows cannot be upserted; give it one "
            "(the entity key)"
        )
    keep = set(keep_when_null)
    excluded = stmt.excluded
    updates = {
        c: func.coalesce(excluded[c], table.c[c]) if c in keep else excluded[c]
        for c in rows[0]
        if c not in keys
    }
    if updates:
        stmt = stmt.on_conflict_do_update(index_elements=keys, set_=updates)
    else:  # a row of key columns only: nothing to update
        stmt = stmt.on_conflict_do_nothing(index_elements=keys)
    conn.execute(stmt, list(rows))
