"""One dialect upsert (``INSERT .. ON CONFLICT (primary key) DO UPDATE``) for SQLite and
PostgreSQL, the statement every store writes rows with.

``upsert`` takes rows as dicts and runs through SQLAlchemy Core (its statement built once per
table and column set). ``RowUpsert`` is the mirror's hot path: rows as tuples in a fixed column
order, the statement compiled once per dialect and handed to the driver's ``executemany``
with only the columns whose type needs it converted, skipping Core's per-row parameter
processing (a third of a mirror's write cost on SQLite, measured by bench/mirror.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Connection, Table, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import StatementError

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
    stmt = _statement(conn.dialect.name, table, tuple(rows[0]), frozenset(keep_when_null))
    conn.execute(stmt, list(rows))


@functools.lru_cache(maxsize=1024)
def _statement(dialect: str, table: Table, columns: tuple[str, ...], keep: frozenset[str]) -> Any:
    """The upsert of ``columns`` into ``table``: built once, so Core's compiled cache is hit
    without building the statement (and its ``excluded`` alias) per call."""
    if dialect == "postgresql":
        stmt: Any = postgresql.insert(table)
    elif dialect == "sqlite":
        stmt = sqlite.insert(table)
    else:
        raise StoreError(
            f"upserts into {table.name!r} need SQLite or PostgreSQL, not {dialect}; point the "
            "service's database at one of them"
        )
    keys = [c.name for c in table.primary_key.columns]
    if not keys:
        raise StoreError(
            f"table {table.name!r} has no primary key, so rows cannot be upserted; give it one "
            "(the entity key)"
        )
    excluded = stmt.excluded
    updates = {
        c: func.coalesce(excluded[c], table.c[c]) if c in keep else excluded[c]
        for c in columns
        if c not in keys
    }
    if updates:
        return stmt.on_conflict_do_update(index_elements=keys, set_=updates)
    # a row of key columns only: nothing to update
    return stmt.on_conflict_do_nothing(index_elements=keys)


class _Compiled(NamedTuple):
    """An upsert as the driver runs it: ``sql`` with positional parameters, the order of the
    row's values in them, and the converters of the values whose type has one."""

    sql: str
    names: tuple[str, ...]  # the columns of the parameters, in order
    order: tuple[int, ...] | None  # where each is in a row; None: the row's own order
    convert: tuple[tuple[int, Callable[[Any], Any]], ...]


class RowUpsert:
    """Upserts rows given as tuples of ``columns`` (in that order) into ``table``, as ``upsert``
    does, through a statement compiled once per dialect and the driver's ``executemany``.

    Values are converted as Core converts them (each column type's bind processor, for the
    few types that have one); a value that cannot be converted raises StatementError, as it
    would through Core. A table with Python-side column defaults takes the Core path, which
    computes them."""

    def __init__(
        self, table: Table, columns: Sequence[str], *, keep_when_null: Iterable[str] = ()
    ) -> None:
        self.table = table
        self.columns = tuple(columns)
        self._keep = frozenset(keep_when_null)
        self._compiled: dict[Dialect, _Compiled | None] = {}

    def __call__(self, conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        dialect = conn.dialect
        try:
            compiled = self._compiled[dialect]
        except KeyError:
            compiled = self._compiled[dialect] = self._compile(dialect)
        if compiled is None:
            names = self.columns
            upsert(conn, self.table, [dict(zip(names, r, strict=True)) for r in rows])
            return
        params: Sequence[tuple[Any, ...]] = rows
        if compiled.order is not None or compiled.convert:
            params = [self._params(r, compiled) for r in rows]
        conn.exec_driver_sql(compiled.sql, list(params))

    def _params(self, row: tuple[Any, ...], compiled: _Compiled) -> tuple[Any, ...]:
        values = list(row) if compiled.order is None else [row[i] for i in compiled.order]
        for i, convert in compiled.convert:
            try:
                values[i] = convert(values[i])
            except Exception as exc:  # as Core reports a value its type cannot bind
                column = f"{self.table.name}.{compiled.names[i]}"
                raise StatementError(
                    f"{type(exc).__name__}: {exc} (value {values[i]!r} for {column})",
                    compiled.sql,
                    None,
                    exc,
                ) from exc
        return tuple(values)

    def _compile(self, dialect: Dialect) -> _Compiled | None:
        stmt = _statement(dialect.name, self.table, self.columns, self._keep)
        positional = dialect if dialect.positional else _format_dialect(type(dialect))
        compiled: Any = stmt.compile(dialect=positional, column_keys=list(self.columns))
        names = list(compiled.positiontup or ())
        if compiled.insert_prefetch or sorted(names) != sorted(self.columns):
            return None  # Python-side defaults to compute, or binds of its own: Core's path
        index = {c: i for i, c in enumerate(self.columns)}
        order = tuple(index[n] for n in names)
        convert = []
        for i, name in enumerate(names):
            proc = self.table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            if proc is not None:
                convert.append((i, proc))
        same = order == tuple(range(len(order)))
        return _Compiled(compiled.string, tuple(names), None if same else order, tuple(convert))


_FORMAT_DIALECTS: dict[str, Dialect] = {}


def _format_dialect(cls: type[Dialect]) -> Dialect:
    """A dialect like ``cls`` that renders positional ``%s`` parameters (psycopg takes them
    with tuples), for a statement run by the driver with rows as tuples."""
    name = f"{cls.__module__}.{cls.__qualname__}"
    made = _FORMAT_DIALECTS.get(name)
    if made is None:
        made = _FORMAT_DIALECTS[name] = cls(paramstyle="format")  # type: ignore[call-arg]
    return made
