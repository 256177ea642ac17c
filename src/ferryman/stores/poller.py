"""The table poller: reads the changed rows of a legacy table by an ``(updated_at, id)`` watermark.

For tables whose writers cannot use the outbox. Each ``poll`` returns the rows past the stored
watermark, in ``(updated_at, id)`` order, that are older than ``now - safety_delay``, and moves
the watermark (in ``ferryman_pollers``) in the caller's transaction. The id breaks ties between
rows with one ``updated_at``; the delay lets transactions that commit late with an earlier
timestamp land before the watermark passes them. docs/outbox.md says what a poller cannot see.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    MetaData,
    Row,
    String,
    Table,
    Text,
    and_,
    or_,
    select,
)
from sqlalchemy.types import Date, Numeric

from ferryman.errors import ConfigError, StoreError
from ferryman.stores.database import Database
from ferryman.stores.upsert import upsert

POLLERS_TABLE = "ferryman_pollers"


def pollers_table(metadata: MetaData) -> Table:
    """The ``ferryman_pollers`` table (one watermark per poller) on ``metadata``."""
    existing = metadata.tables.get(POLLERS_TABLE)
    if existing is not None:
        return existing
    return Table(
        POLLERS_TABLE,
        metadata,
        Column("name", String(255), primary_key=True),
        # JSON of [updated_at, id], each tagged with its type, so any column type round-trips.
        Column("watermark", Text, nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        comment="ferryman: how far each table poller has read, as (updated_at, id)",
    )


class TablePoller:
    """Polls ``table`` for rows changed since the last poll, tie-safe on ``(updated_at, id)``.

    ``safety_delay`` (seconds) is how long a row's transaction may take to commit after it set
    ``updated_at``; ``name`` keys the stored watermark (default: the table's name); ``now``
    returns the current time in the column's terms (default: UTC datetime, or epoch seconds for
    a numeric column).
    """

    def __init__(
        self,
        database: Database,
        table: Table,
        *,
        updated_at: str = "updated_at",
        id: str = "id",  # the tie-breaking column, as the issue names it
        safety_delay: float = 5.0,
        name: str | None = None,
        limit: int = 1000,
        now: Callable[[], Any] | None = None,
    ) -> None:
        for what, column in (("updated_at", updated_at), ("id", id)):
            if column not in table.c:
                raise ConfigError(
                    f"TablePoller({table.name!r}): {what}={column!r} is not a column of the "
                    f"table (it has {', '.join(table.c.keys())}); name the column to poll by"
                )
        if safety_delay < 0:
            raise ConfigError(f"TablePoller(safety_delay={safety_delay!r}): use seconds >= 0")
        if limit < 1:
            raise ConfigError(f"TablePoller(limit={limit!r}): read at least 1 row per poll")
        self.table = table
        self.updated_at = table.c[updated_at]
        self.id = table.c[id]
        self.safety_delay = safety_delay
        self.name = name or table.name
        self.limit = limit
        self.pollers = pollers_table(database.metadata)
        self._now = now or _default_now(self.updated_at.type)

    def poll(self, conn: Connection) -> list[Row[Any]]:
        """The next rows past the watermark and older than the safety delay, oldest first; the
        watermark moves past them in ``conn``'s transaction (commit it with your own work)."""
        cutoff = _minus(self._now(), self.safety_delay)
        mark = self.watermark(conn)
        query = select(self.table).where(self.updated_at <= cutoff)
        if mark is not None:
            last_at, last_id = mark
            query = query.where(
                or_(
                    self.updated_at > last_at,
                    and_(self.updated_at == last_at, self.id > last_id),
                )
            )
        query = query.order_by(self.updated_at, self.id).limit(self.limit)
        rows = list(conn.execute(query))
        if rows:
            last = rows[-1]
            self._save(conn, (last._mapping[self.updated_at], last._mapping[self.id]))
        return rows

    def watermark(self, conn: Connection) -> tuple[Any, Any] | None:
        """The stored ``(updated_at, id)`` of the last row returned, or None before the first."""
        p = self.pollers
        raw = conn.scalar(select(p.c.watermark).where(p.c.name == self.name))
        if raw is None:
            return None
        at, ident = (_load(part) for part in json.loads(raw))
        column_type = self.updated_at.type
        if (
            isinstance(at, dt.datetime)
            and at.tzinfo is None
            and getattr(column_type, "timezone", False)
        ):
            at = at.replace(tzinfo=dt.UTC)  # SQLite hands back naive datetimes; they are UTC
        return at, ident

    def _save(self, conn: Connection, mark: tuple[Any, Any]) -> None:
        row = {
            "name": self.name,
            "watermark": json.dumps([_dump(mark[0]), _dump(mark[1])]),
            "updated_at": dt.datetime.now(dt.UTC),
        }
        upsert(conn, self.pollers, [row])


def _default_now(column_type: Any) -> Callable[[], Any]:
    if isinstance(column_type, DateTime):
        if column_type.timezone:
            return lambda: dt.datetime.now(dt.UTC)
        # A naive column: ferryman assumes it holds UTC, as SQLAlchemy's own defaults do.
        return lambda: dt.datetime.now(dt.UTC).replace(tzinfo=None)
    if isinstance(column_type, Numeric) or column_type.python_type in (int, float):
        return time.time
    if isinstance(column_type, Date):
        raise ConfigError("TablePoller: a Date column cannot order changes; poll a timestamp")
    raise ConfigError(
        f"TablePoller: cannot tell the time for an updated_at column of type {column_type}; "
        "pass now=callable returning the current value in the column's terms"
    )


def _minus(now: Any, seconds: float) -> Any:
    if isinstance(now, dt.datetime):
        return now - dt.timedelta(seconds=seconds)
    if isinstance(now, int | float):
        return now - seconds if isinstance(now, float) else now - int(seconds)
    raise StoreError(f"TablePoller: now() returned {now!r}; return a datetime or a number")


def _dump(value: Any) -> list[Any]:
    if isinstance(value, dt.datetime):
        return ["datetime", value.isoformat()]
    if isinstance(value, int | float | str):
        return [type(value).__name__, value]
    raise StoreError(
        f"TablePoller: cannot store a watermark of type {type(value).__name__}; poll by a "
        "datetime or numeric updated_at and an integer or string id"
    )


def _load(tagged: list[Any]) -> Any:
    kind, value = tagged
    return dt.datetime.fromisoformat(value) if kind == "datetime" else value
