"""Joins by partial writes: each source topic writes its own columns of one local table.

A ``JoinedTable`` is a table keyed by the joined entity's id. Each ``part`` (a topic's records)
upserts only its columns, clears them on a tombstone, and may map its own key to the table key
(``key=`` a field or a function of the value). A ``children`` part writes rows of a child table
that point at the table key (one-to-many). Every write marks its table key in ``ferryman_dirty``
and saves the consumed offsets, all in the caller's transaction; the Republisher publishes the
marked keys at its own cadence.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import (
    Column,
    Connection,
    MetaData,
    String,
    Table,
    Text,
    and_,
    delete,
    exists,
    select,
    update,
)

from ferryman.errors import ConfigError, StoreError
from ferryman.records import TopicPartition
from ferryman.stores.database import Database
from ferryman.stores.dirty import dirty_table, in_values, key_text, mark_dirty
from ferryman.stores.mirror import Applied, MirrorRecord, Poisoned, _is_poison
from ferryman.stores.tables import Row, jsonable, table_of
from ferryman.stores.upsert import upsert

JOIN_KEYS_TABLE = "ferryman_join_keys"
KeyMap = Callable[[Any], Any]


def join_keys_table(metadata: MetaData) -> Table:
    """``ferryman_join_keys``: source key -> table key, so a tombstone (no value) finds its row."""
    if JOIN_KEYS_TABLE in metadata.tables:
        return metadata.tables[JOIN_KEYS_TABLE]
    return Table(
        JOIN_KEYS_TABLE,
        metadata,
        Column("joined_table", String(255), primary_key=True),
        Column("source", String(255), primary_key=True),
        Column("source_key", Text, primary_key=True),
        Column("table_key", Text, nullable=False),
        comment="ferryman: which row of a joined table each source key last wrote",
    )


@dataclass(frozen=True)
class Part:
    """One source of a joined table: its topic, the columns it owns (field -> column), how its
    records find the table key, and, for a child part, the child table and its parent column."""

    topic: str
    columns: Mapping[str, str]
    key: KeyMap | None
    required: bool
    child: Table | None = None
    parent: str | None = None

    def row(self, value: Any) -> Row:
        get: Callable[[str], Any] = (
            value.__getitem__ if isinstance(value, Mapping) else value.__getattribute__
        )
        return {column: jsonable_or_raw(get(field)) for field, column in self.columns.items()}


def jsonable_or_raw(value: Any) -> Any:
    """Nested values (lists, dicts, models) as JSON data, enums as their symbol; scalars as they
    are (the column's type stores them)."""
    nested = isinstance(value, list | tuple | dict | enum.Enum)
    if nested or hasattr(value, "__dataclass_fields__") or hasattr(value, "model_dump"):
        return jsonable(value)
    return value


class JoinedTable:
    """A table that several topics write parts of; see the module docstring.

    ``owner``: the topic whose entity the row is (its tombstone makes the output a tombstone,
    while the other parts keep their columns for when it comes back); without one, the output
    goes when every part is empty. A row whose parts are all empty is deleted.
    """

    def __init__(self, database: Database, into: Any, *, owner: Any = None) -> None:
        self.database = database
        self.table = table_of(into)
        pk = list(self.table.primary_key.columns)
        if len(pk) != 1:
            raise ConfigError(
                f"joined table {self.table.name!r} has {len(pk)} primary key columns; it needs "
                "exactly one, holding the joined entity's key"
            )
        self.key_column = pk[0]
        self.owner = None if owner is None else _topic_name(owner)
        self.parts: dict[str, Part] = {}
        self.dirty = dirty_table(database.metadata)
        self.join_keys = join_keys_table(database.metadata)

    @property
    def name(self) -> str:
        return self.table.name

    def part(
        self,
        topic: Any,
        fields: Sequence[str] | Mapping[str, str],
        *,
        key: str | KeyMap | None = None,
        required: bool = True,
    ) -> Part:
        """Declare that ``topic``'s records write ``fields`` (names, or field -> column) of the
        row whose key is the record key, or ``key`` (a field name, or a function of the value)."""
        columns = _columns(fields)
        missing = [c for c in columns.values() if c not in self.table.c]
        if missing or self.key_column.name in columns.values():
            raise ConfigError(
                f"joined table {self.name!r}: a part writes columns of the table other than its "
                f"key {self.key_column.name!r}, but {_topic_name(topic)!r} names "
                f"{', '.join(missing) or self.key_column.name}; its columns: "
                f"{', '.join(self.table.c.keys())}"
            )
        taken = {c for p in self.parts.values() for c in p.columns.values()} & set(columns.values())
        if taken:
            raise ConfigError(
                f"joined table {self.name!r}: column(s) {', '.join(sorted(taken))} already "
                "belong to another part; each column has one writer"
            )
        return self._add(Part(_topic_name(topic), columns, _key_map(key), required))

    def children(
        self,
        topic: Any,
        into: Any,
        fields: Sequence[str] | Mapping[str, str],
        *,
        parent: str,
        key: str | KeyMap,
    ) -> Part:
        """Declare that each of ``topic``'s records is one row of the child table ``into`` (its
        primary key is the record key), pointing at the table key ``key`` of the value through
        the column ``parent``."""
        child = table_of(into)
        pk = list(child.primary_key.columns)
        columns = _columns(fields)
        missing = [c for c in [*columns.values(), parent] if c not in child.c]
        if len(pk) != 1 or missing:
            raise ConfigError(
                f"child table {child.name!r} needs one primary key column (the record key) and "
                f"the columns {', '.join(missing) or parent}; it has {', '.join(child.c.keys())}"
            )
        return self._add(
            Part(_topic_name(topic), columns, _key_map(key), False, child=child, parent=parent)
        )

    def _add(self, part: Part) -> Part:
        if part.topic in self.parts:
            raise ConfigError(
                f"joined table {self.name!r}: topic {part.topic!r} is declared as a part twice"
            )
        self.parts[part.topic] = part
        return part

    def apply(self, conn: Connection, records: Iterable[Any], group: str) -> Applied:
        """Apply one poll's decoded ``records`` of the parts' topics, mark the changed keys and
        save the offsets, in ``conn``'s transaction (as ``Mirror.apply``; poisoned returned).
        ``records`` may be tuples of MirrorRecord's fields (the consumer loop's Keyed)."""
        make = MirrorRecord._make
        batch = [r if isinstance(r, MirrorRecord) else make(r) for r in records]
        for r in batch:
            if r.topic not in self.parts:
                raise StoreError(
                    f"joined table {self.name!r} was given a record of {r.topic!r}, which is not "
                    f"one of its parts ({', '.join(self.parts)}); declare it with .part()"
                )
        stored = self.database.offsets.load(
            conn, group, {r.topic_partition for r in batch}, lock=True
        )
        fresh = [r for r in batch if r.offset >= stored.get(r.topic_partition, -1)]
        latest: dict[tuple[str, Any], MirrorRecord] = {}
        poisoned: list[Poisoned] = []
        for r in fresh:
            if r.key is None and self.parts[r.topic].key is None:
                error = StoreError(
                    f"record at {r.topic}[{r.partition}]@{r.offset} has no key and its part has "
                    "no key=; give the part key=FIELD (the table key in the value)"
                )
                poisoned.append(Poisoned(r, error))
                continue
            slot = (r.topic, key_text(r.key) if r.key is not None else f"@{r.partition}/{r.offset}")
            latest.pop(slot, None)  # a source key's last value decides its part of the row
            latest[slot] = r
        changed: set[str] = set()
        ops = list(latest.values())
        try:
            with conn.begin_nested():
                changed = self._apply_all(conn, ops)
        except Exception:
            changed = set()
            for r in ops:  # isolate the bad record(s): one savepoint each
                try:
                    with conn.begin_nested():
                        changed |= self._apply_one(conn, r)
                except Exception as exc:
                    if not _is_record_error(exc):
                        raise
                    poisoned.append(Poisoned(r, exc))
        mark_dirty(conn, self.dirty, self.name, [json.loads(k) for k in changed])
        offsets: dict[TopicPartition, int] = {}
        timestamps: dict[TopicPartition, int] = {}
        bad = {id(p.record) for p in poisoned}
        for r in sorted(fresh, key=lambda r: r.offset):
            offsets[r.topic_partition] = max(offsets.get(r.topic_partition, 0), r.offset + 1)
            if id(r) not in bad:
                timestamps[r.topic_partition] = r.timestamp
        self.database.offsets.save(conn, group, offsets, timestamps)
        return Applied(
            applied=len(fresh) - len(poisoned),
            skipped=len(batch) - len(fresh),
            poisoned=tuple(sorted(poisoned, key=lambda p: (p.record.partition, p.record.offset))),
            offsets=offsets,
            timestamps=timestamps,
        )

    def _apply_all(self, conn: Connection, ops: list[MirrorRecord]) -> set[str]:
        """Write ``ops``: values of parts keyed like the table as one upsert per part (the
        common case, and most of a catch-up), the rest one by one."""
        changed: set[str] = set()
        bulk: dict[str, list[Row]] = {}
        for r in ops:
            part = self.parts[r.topic]
            if part.child is None and part.key is None and r.value is not None:
                key = self._table_key(r.key)
                bulk.setdefault(r.topic, []).append(
                    {self.key_column.name: key, **part.row(r.value)}
                )
                changed.add(key_text(key))
            else:
                changed |= self._apply_one(conn, r)
        for rows in bulk.values():
            upsert(conn, self.table, rows)
        return changed

    def _apply_one(self, conn: Connection, r: MirrorRecord) -> set[str]:
        """Write one source record's part; returns the table keys (as JSON text) it changed."""
        part = self.parts[r.topic]
        if part.child is not None:
            return self._apply_child(conn, part, r)
        if part.key is None:
            old = None if r.key is None else self._table_key(r.key)
            new = None if r.value is None else old
        else:
            old = self._mapped(conn, part, r.key)
            new = None if r.value is None else self._table_key(part.key(r.value))
        changed: set[str] = set()
        if old is not None and old != new:  # a tombstone, or the source moved to another row
            self._clear(conn, part, old)
            changed.add(key_text(old))
        if new is not None:
            upsert(conn, self.table, [{self.key_column.name: new, **part.row(r.value)}])
            changed.add(key_text(new))
        if part.key is not None and r.key is not None and old != new:
            self._remember(conn, part, r.key, new)
        return changed

    def _apply_child(self, conn: Connection, part: Part, r: MirrorRecord) -> set[str]:
        assert part.child is not None
        assert part.parent is not None
        assert part.key is not None
        child, parent = part.child, part.child.c[part.parent]
        child_key = next(iter(child.primary_key.columns))
        old = conn.execute(select(parent).where(child_key == r.key)).scalar_one_or_none()
        changed: set[str] = set()
        if r.value is None:
            conn.execute(delete(child).where(child_key == r.key))
        else:
            new = self._table_key(part.key(r.value))
            # The row must exist for its children to be published; the key alone is enough.
            upsert(conn, self.table, [{self.key_column.name: new}])
            upsert(conn, child, [{child_key.name: r.key, part.parent: new, **part.row(r.value)}])
            changed.add(key_text(new))
        if old is not None and key_text(old) not in changed:
            self._collect(conn, old)
            changed.add(key_text(old))
        return changed

    def _clear(self, conn: Connection, part: Part, key: Any) -> None:
        """Set ``part``'s columns of row ``key`` to NULL, and delete the row once it is empty."""
        nulls: dict[str, Any] = dict.fromkeys(part.columns.values())
        conn.execute(update(self.table).where(self.key_column == key).values(nulls))
        self._collect(conn, key)

    def _collect(self, conn: Connection, key: Any) -> None:
        """Delete row ``key`` when no part has a value in it and it has no child rows."""
        empty = [
            self.table.c[c].is_(None)
            for p in self.parts.values()
            if p.child is None
            for c in p.columns.values()
        ]
        orphan = [
            ~exists().where(p.child.c[p.parent] == key)
            for p in self.parts.values()
            if p.child is not None and p.parent is not None
        ]
        conn.execute(delete(self.table).where(self.key_column == key, *empty, *orphan))

    def _mapped(self, conn: Connection, part: Part, source_key: Any) -> Any:
        """The table key that ``source_key`` of ``part`` last wrote, if any."""
        if source_key is None:
            return None
        jk = self.join_keys.c
        found = conn.execute(
            select(jk.table_key).where(
                jk.joined_table == self.name,
                jk.source == part.topic,
                jk.source_key == key_text(source_key),
            )
        ).scalar_one_or_none()
        return None if found is None else json.loads(found)

    def _remember(self, conn: Connection, part: Part, source_key: Any, table_key: Any) -> None:
        jk = self.join_keys
        where = and_(
            jk.c.joined_table == self.name,
            jk.c.source == part.topic,
            jk.c.source_key == key_text(source_key),
        )
        if table_key is None:
            conn.execute(delete(jk).where(where))
            return
        row = {
            "joined_table": self.name,
            "source": part.topic,
            "source_key": key_text(source_key),
            "table_key": key_text(table_key),
        }
        upsert(conn, jk, [row])

    def _table_key(self, key: Any) -> Any:
        """``key`` as a table key; a value mapping to no key is that record's fault."""
        if key is None:
            raise StoreError(
                f"joined table {self.name!r}: a record maps to no table key (None); each value "
                "must carry the key of the row it belongs to"
            )
        return key

    # --- reading, for the republisher ------------------------------------------------------

    def read(self, conn: Connection, keys: Collection[Any]) -> dict[Any, JoinedRow]:
        """The row (None when deleted) and child rows (per child table) of each of ``keys``."""
        keys = list(keys)
        found: dict[Any, Row] = {}
        children: dict[Any, dict[str, list[Row]]] = {}
        for start in range(0, len(keys), 5000):
            chunk = keys[start : start + 5000]
            for row in conn.execute(
                select(self.table).where(in_values(conn, self.key_column, chunk))
            ):
                values = row._asdict()
                found[values[self.key_column.name]] = values
            for p in self.parts.values():
                if p.child is None or p.parent is None:
                    continue
                parent = p.child.c[p.parent]
                query = (
                    select(p.child)
                    .where(in_values(conn, parent, chunk))
                    .order_by(*p.child.primary_key)
                )
                for row in conn.execute(query):
                    values = row._asdict()
                    by_key = children.setdefault(values[p.parent], {})
                    by_key.setdefault(p.child.name, []).append(values)
        out: dict[Any, JoinedRow] = {}
        for k in keys:
            row_of_k = found.get(k)
            out[k] = JoinedRow(row_of_k, children.get(k, {}), self.state(row_of_k))
        return out

    def state(self, row: Row | None) -> Literal["deleted", "incomplete", "complete"]:
        """Whether ``row`` is gone (no row, or its owner's part is empty), lacks a required
        part, or is complete."""
        if row is None:
            return "deleted"
        for p in self.parts.values():
            present = p.child is not None or any(row[c] is not None for c in p.columns.values())
            if not present and p.topic == self.owner:
                return "deleted"
            if not present and p.required:
                return "incomplete"
        return "complete"

    def __repr__(self) -> str:
        return f"JoinedTable({self.name!r} <- {', '.join(self.parts)})"


@dataclass(frozen=True)
class JoinedRow:
    """A key's row (None when deleted), its child rows by child table name, and its state."""

    row: Row | None
    children: Mapping[str, list[Row]]
    state: Literal["deleted", "incomplete", "complete"]


def _columns(fields: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    if isinstance(fields, str):
        raise ConfigError(f"fields={fields!r} is one string; write a list: fields=[{fields!r}]")
    if isinstance(fields, Mapping):
        return dict(fields)
    return {f: f for f in fields}


def _key_map(key: str | KeyMap | None) -> KeyMap | None:
    if key is None or callable(key):
        return key
    if isinstance(key, str):
        field = key
        return lambda v: v[field] if isinstance(v, Mapping) else getattr(v, field)
    raise ConfigError(f"key={key!r}: write a field name of the value, or a function of it")


def _topic_name(topic: Any) -> str:
    name = topic if isinstance(topic, str) else getattr(topic, "name", None)
    if not isinstance(name, str):
        raise ConfigError(f"{topic!r} is not a topic; pass a topic declaration or its name")
    return name


def _is_record_error(exc: Exception) -> bool:
    # A value without the mapped key field, or one the database refuses: that record only.
    return isinstance(exc, StoreError | KeyError | AttributeError) or _is_poison(exc)
