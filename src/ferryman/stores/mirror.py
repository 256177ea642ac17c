"""Mirror: an entity topic kept as a table, effectively once.

``Mirror.apply`` takes the decoded records of one poll and, in the caller's transaction, compacts
them to the last value per key, writes one upsert and one delete, and saves the next offsets in
``ferryman_offsets``. Rows and offsets commit together, and records at or below the stored
offsets are skipped, so a redelivered batch changes nothing.

A poisoned record (the transform raises, or the database refuses its row) is isolated by
retrying halves of the batch under savepoints down to single rows; the rest is applied and the
poisoned records are returned for the caller's failure policy. The consumer loop calls::

    with database.begin() as conn:
        applied = mirror.apply(conn, records, group)
        if applied.poisoned:
            ...  # retry: roll back (raise) and apply the same records later;
                 # give up: dead-letter applied.poisoned, wait for the acks, then commit
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from operator import itemgetter
from typing import Any, NamedTuple

from sqlalchemy import Connection, Table, bindparam, delete
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, ProgrammingError, StatementError

from ferryman.errors import ConfigError, StoreError
from ferryman.records import TopicPartition
from ferryman.stores.database import Database
from ferryman.stores.tables import (
    Row,
    RowMapper,
    Transform,
    check_table,
    field_columns,
    table_from_model,
    table_of,
)
from ferryman.stores.upsert import RowUpsert, upsert
from ferryman.topics import EntityTopic

_offset = itemgetter(2)  # a record's offset: max() and min() run their loops in C with it

DELETE_CHUNK = 10_000
"""Keys per DELETE: one bind parameter each, and PostgreSQL takes at most 65535 per statement."""


class MirrorRecord(NamedTuple):
    """A decoded record of an entity topic: ``value is None`` is a tombstone (delete the key)."""

    topic: str
    partition: int
    offset: int
    key: Any
    value: Any
    timestamp: int = 0

    @property
    def topic_partition(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


class Poisoned(NamedTuple):
    """A record the mirror could not apply, and why."""

    record: MirrorRecord
    error: Exception


class Applied(NamedTuple):
    """What one ``Mirror.apply`` did.

    ``applied``: records whose effect is in the table (those superseded by a later value of their
    key in the same batch included); ``skipped``: records below the stored offsets (applied
    before); ``poisoned``: records not applied; ``offsets``: the next offsets saved;
    ``timestamps``: the timestamp (ms) of the last applied record per partition, for lag.
    """

    applied: int
    skipped: int
    poisoned: tuple[Poisoned, ...]
    offsets: dict[TopicPartition, int]
    timestamps: dict[TopicPartition, int]


_Op = tuple[tuple[Any, ...], Any, Any]
"""One key's change after compaction: (record, key as stored, row to upsert or None to delete
the key's row); a plain tuple, as one is built per key mirrored."""


class Mirror:
    """Keeps ``topic`` as a table of ``database``: rows upserted by key, tombstones deleted.

    ``into``: a Table or ORM class to write into; by default a table named after the topic
    (``table=`` to rename it) is made from the topic's model. Fields map to columns of the same
    name unless ``rename`` ({field: column}) or ``exclude`` says otherwise; a ``transform``
    (value -> row dict, or None to delete) replaces that mapping.
    """

    def __init__(
        self,
        database: Database,
        topic: EntityTopic[Any],
        into: Any = None,
        *,
        table: str | None = None,
        rename: Mapping[str, str] | None = None,
        exclude: Collection[str] = (),
        transform: Transform | None = None,
    ) -> None:
        if not isinstance(topic, EntityTopic):
            raise ConfigError(
                f"a mirror keeps an entity topic as a table, and {topic!r} is not one; declare "
                "the topic as fm.EntityTopic(name, Model, key=...) or handle its records with "
                "@service.on(topic)"
            )
        self.database = database
        self.topic = topic
        columns = field_columns(topic.model, rename=rename, exclude=exclude)
        key_column = (
            next(c for c in columns if c.field == topic.key) if topic.key not in exclude else None
        )
        if into is None:
            if table is not None and not table:
                raise ConfigError("table='' is not a table name; leave table out or name one")
            self.table: Table = table_from_model(
                table or _table_name(topic.name),
                database.metadata,
                topic.model,
                topic.key,
                rename=rename,
                exclude=exclude,
            )
        else:
            if table is not None:
                raise ConfigError(
                    "pass either into= (a Table or ORM class) or table= (a name for a table made "
                    "from the topic's model), not both"
                )
            self.table = table_of(into)
            if transform is None:
                _check_fits(self.table, [c.column for c in columns], topic)
        pk = list(self.table.primary_key.columns)
        if len(pk) != 1:
            raise ConfigError(
                f"table {self.table.name!r} has {len(pk)} primary key columns; a mirror needs "
                f"exactly one, holding the entity key ({topic.name!r}'s {topic.key!r})"
            )
        self.key_column = pk[0]
        if transform is None and key_column is not None and key_column.column != pk[0].name:
            raise ConfigError(
                f"table {self.table.name!r}'s primary key is {pk[0].name!r}, but the key field "
                f"{topic.key!r} maps to column {key_column.column!r}; write "
                f"rename={{{topic.key!r}: {pk[0].name!r}}}"
            )
        self._key_convert = key_column.convert if key_column is not None else None
        self._transform = transform
        self._mapper = RowMapper(columns)
        # Without a transform every row has the mapper's columns: rows go as tuples through a
        # statement compiled once (RowUpsert), the mirror's hot path.
        self._upsert = RowUpsert(self.table, self._mapper.names)
        # Built once: a statement made per run coerces each key it is given into the IN list.
        self._delete = delete(self.table).where(
            self.key_column.in_(bindparam("gone", expanding=True))
        )

    def check(self, conn: Connection) -> None:
        """Raise MirrorSchemaError when the live table lacks columns this mirror writes."""
        check_table(conn, self.table)

    def expected(self, key: Any, value: Any) -> tuple[Any, Row | None]:
        """The key (as stored) and row this mirror writes for ``value`` under ``key`` (None: no
        row), for comparing the table with its topic; raises what the mapping raises."""
        if self._key_convert is not None:
            key = self._key_convert(key)
        if value is None:
            return key, None
        if self._transform is None:
            return key, self._mapper(value)
        row = self._transform(value)
        return key, None if row is None else self._checked(row, key)

    def apply(self, conn: Connection, records: Iterable[MirrorRecord], group: str) -> Applied:
        """Apply one poll's ``records`` of the topic and save the offsets, in ``conn``'s
        transaction. Poisoned records are returned, not raised; their offsets are saved too, so
        the caller must handle them (see the module docstring) before it commits.

        ``records`` may be any tuples of MirrorRecord's fields in its order (the consumer
        loop's Keyed tuples are): this runs for every record mirrored, so it reads them by
        position and builds nothing per record it does not need."""
        batch = records if isinstance(records, list) else list(records)
        name = self.topic.name
        for r in batch:
            if r[0] != name:
                raise StoreError(
                    f"mirror of {name!r} was given a record of {r[0]!r}; pass each "
                    "mirror only its own topic's records"
                )
        # Every record is of this topic: partitions are told apart by number alone.
        partitions = {r[1] for r in batch}
        stored = self.database.offsets.load(
            conn, group, [TopicPartition(name, p) for p in partitions], lock=True
        )
        floor = {tp.partition: offset for tp, offset in stored.items()}
        one = len(partitions) == 1  # a run of one partition, the consumer loop's case
        # Records below the floor were applied before: a redelivery changes nothing.
        fresh_records = batch
        if floor and not (one and min(batch, key=_offset)[2] >= min(floor.values())):
            fresh_records = [r for r in batch if r[2] >= floor.get(r[1], -1)]
        fresh = len(fresh_records)
        ends: dict[int, int] = {}  # the last offset seen per partition
        stamps: dict[int, int] = {}  # and its record's timestamp
        if one and fresh_records:
            last = max(reversed(fresh_records), key=_offset)  # of equal offsets, the last
            ends[last[1]], stamps[last[1]] = last[2], last[5]
        else:
            for r in fresh_records:
                partition, offset = r[1], r[2]
                if offset >= ends.get(partition, -1):
                    ends[partition], stamps[partition] = offset, r[5]
        latest: dict[Any, tuple[Any, ...]] = {}
        drop = latest.pop
        for r in fresh_records:
            key = r[3]
            drop(key, None)  # keep the order of each key's last change
            latest[key] = r
        poisoned: list[Poisoned] = []
        if None in latest:  # records without a key: none can be applied
            del latest[None]
            poisoned = [
                Poisoned(_record(r), StoreError(f"{_where(r)} has no key; entity records need one"))
                for r in fresh_records
                if r[3] is None
            ]
        ops = self._ops(latest.values(), poisoned)
        poisoned.extend(self._write(conn, ops))
        offsets = {TopicPartition(name, p): end + 1 for p, end in ends.items()}
        if poisoned:  # the timestamp of the last record applied, not of a poisoned one
            bad = {(p.record.partition, p.record.offset) for p in poisoned}
            stamps, ends = {}, {}
            for r in batch:
                partition, offset = r[1], r[2]
                if (
                    offset >= floor.get(partition, -1)
                    and (partition, offset) not in bad
                    and offset > ends.get(partition, -1)
                ):
                    ends[partition], stamps[partition] = offset, r[5]
        timestamps = {TopicPartition(name, p): ms for p, ms in stamps.items()}
        self.database.offsets.save(conn, group, offsets, timestamps)
        return Applied(
            applied=fresh - len(poisoned),
            skipped=len(batch) - fresh,
            poisoned=tuple(sorted(poisoned, key=lambda p: (p.record.partition, p.record.offset))),
            offsets=offsets,
            timestamps=timestamps,
        )

    def _ops(self, latest: Iterable[tuple[Any, ...]], poisoned: list[Poisoned]) -> list[_Op]:
        """Each key's last change as an op: its key as stored, and its row (a tuple of the
        mapper's columns, or a transform's dict) or None to delete; a record whose value cannot
        be mapped is added to ``poisoned``."""
        key_convert = self._key_convert
        transform = self._transform
        to_row = self._mapper.values
        if key_convert is None and transform is None:  # the common case, in C loops mostly
            records = list(latest)
            values = [r[4] for r in records]
            try:
                rows = self._mapper.rows(values)
            except Exception:  # a value that cannot be mapped: found below, record by record
                pass
            else:
                return list(zip(records, [r[3] for r in records], rows, strict=True))
        ops: list[_Op] = []
        append = ops.append
        for r in latest:
            key, value = r[3], r[4]
            try:
                if key_convert is not None:
                    key = key_convert(key)
                if value is None:
                    append((r, key, None))
                elif transform is None:
                    append((r, key, to_row(value)))
                else:
                    row = transform(value)
                    append((r, key, None if row is None else self._checked(row, key)))
            except Exception as exc:  # the user's transform or a bad value: this record only
                poisoned.append(Poisoned(_record(r), exc))
        return ops

    def _checked(self, row: Any, key: Any) -> Row:
        """A transform's row, with the key filled in when it left it out."""
        if not isinstance(row, dict):
            raise StoreError(
                f"the transform of mirror {self!r} returned {type(row).__name__}; return a dict "
                "of column -> value, or None to delete the key's row"
            )
        unknown = [c for c in row if c not in self.table.c]
        if unknown:
            raise StoreError(
                f"the transform of mirror {self!r} returned column(s) {', '.join(unknown)} that "
                f"table {self.table.name!r} lacks (its columns: {', '.join(self.table.c.keys())})"
            )
        name = self.key_column.name
        if name not in row:
            return {name: key, **row}
        if row[name] is None:  # SQLite would number the row itself: an INTEGER key is the rowid
            raise StoreError(
                f"the transform of mirror {self!r} returned a row whose key column {name!r} is "
                "None; leave the key out (the record's key is used) or give it a value"
            )
        return row

    def _write(self, conn: Connection, ops: list[_Op]) -> list[Poisoned]:
        """Write ``ops`` under a savepoint; on a refused row, the halves, down to single rows."""
        if not ops:
            return []
        try:
            with conn.begin_nested():
                self._execute(conn, ops)
        except Exception as exc:
            if not _is_poison(exc):
                raise
            if len(ops) == 1:
                return [Poisoned(_record(ops[0][0]), exc)]
            middle = len(ops) // 2
            return self._write(conn, ops[:middle]) + self._write(conn, ops[middle:])
        return []

    def _execute(self, conn: Connection, ops: list[_Op]) -> None:
        gone: list[Any] = []
        if self._transform is None:
            gone = [key for _, key, row in ops if row is None]
            self._upsert(conn, [row for _, _, row in ops if row is not None])
        else:  # a transform's rows may differ in their columns: one upsert per set of them
            by_columns: dict[tuple[str, ...], list[Row]] = {}
            for _, key, row in ops:
                if row is None:
                    gone.append(key)
                else:
                    by_columns.setdefault(tuple(row), []).append(row)
            for dicts in by_columns.values():
                upsert(conn, self.table, dicts)
        for start in range(0, len(gone), DELETE_CHUNK):
            conn.execute(self._delete, {"gone": gone[start : start + DELETE_CHUNK]})

    def __repr__(self) -> str:
        return f"Mirror({self.topic.name!r} -> {self.table.name!r})"


def _is_poison(exc: Exception) -> bool:
    """True when the database refused a row for what it holds (a constraint, a value it cannot
    store), not for its own state (locks, lost connections, a missing table): only the former
    is worth isolating; the latter would condemn every row."""
    if isinstance(exc, IntegrityError | DataError):
        return True
    if isinstance(exc, ProgrammingError):
        # A value the driver cannot bind (a dict into a text column) is a ProgrammingError of the
        # driver's own, as are server errors like a missing column: only the message tells the
        # former (sqlite3 and psycopg 3 say it in these words).
        said = str(exc.orig)
        return "Error binding parameter" in said or "cannot adapt type" in said
    if isinstance(exc, DBAPIError):
        return False
    # SQLAlchemy's type processors (StatementError), or the driver refusing a value while
    # binding it (sqlite3 raises OverflowError for an int beyond 64 bits).
    return isinstance(exc, StatementError | TypeError | ValueError | ArithmeticError)


def _check_fits(table: Table, columns: list[str], topic: EntityTopic[Any]) -> None:
    missing = [c for c in columns if c not in table.c]
    if missing:
        fields = ", ".join(repr(c) for c in missing)
        raise ConfigError(
            f"table {table.name!r} has no column(s) {fields} for {topic.name!r}'s fields; add "
            f"them to the table, map them with rename={{field: column}}, or drop them with "
            f"exclude=[{fields}]"
        )


def _table_name(topic: str) -> str:
    # Topic names may hold dots and dashes; table names are plain identifiers.
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in topic)


def _record(r: tuple[Any, ...]) -> MirrorRecord:
    return r if isinstance(r, MirrorRecord) else MirrorRecord._make(r)


def _where(r: tuple[Any, ...]) -> str:
    return f"record at {r[0]}[{r[1]}]@{r[2]}"
