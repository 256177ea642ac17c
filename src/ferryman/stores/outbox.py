"""The transactional outbox: records written as rows in the caller's transaction.

A service that changes its database and publishes writes the already encoded record into
``ferryman_outbox`` in the same transaction; a ``Relay`` (relay.py) publishes the committed rows
and deletes them once the broker acknowledged them. A rolled-back transaction leaves no row, so
nothing is sent. docs/outbox.md states the guarantees.
"""

from __future__ import annotations

import datetime as dt
import random
import struct
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    insert,
    text,
)
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from ferryman.broker.partitioner import partition_for
from ferryman.errors import ConfigError, StoreError
from ferryman.records import Headers
from ferryman.stores.database import Database
from ferryman.stores.leases import leases_table, relays_table

OUTBOX_TABLE = "ferryman_outbox"
NOTIFY_CHANNEL = "ferryman_outbox"
"""The PostgreSQL channel a writing transaction NOTIFYs and relays LISTEN on."""

# One advisory lock per (schema, topic, partition): writers of one partition commit one after
# the other, so on PostgreSQL the rows of a partition commit in id order.
_PARTITION_LOCK = text(
    "SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || :name, 0))"
)
_NOTIFY = text("SELECT pg_notify(:channel, '')")
_ID = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER keys only


class OutboxRecord(NamedTuple):
    """One record to publish, already encoded. ``partition=None``: computed at write time from
    the key (murmur2, as every backend's producer), or chosen at random for an unkeyed record."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    timestamp_ms: int | None = None
    partition: int | None = None


def outbox_table(metadata: MetaData) -> Table:
    """The ``ferryman_outbox`` table on ``metadata`` (declared once, reused after)."""
    existing = metadata.tables.get(OUTBOX_TABLE)
    if existing is not None:
        return existing
    return Table(
        OUTBOX_TABLE,
        metadata,
        Column("id", _ID, primary_key=True, autoincrement=True),
        Column("topic", String(255), nullable=False),
        Column("partition", Integer, nullable=False),
        Column("key", LargeBinary, nullable=True),
        Column("value", LargeBinary, nullable=True),  # NULL: a tombstone
        Column("headers", LargeBinary, nullable=False),  # encode_headers: bytes kept exactly
        Column("timestamp_ms", BigInteger, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        # The relay reads the oldest rows of one partition: this index serves exactly that.
        Index("ix_ferryman_outbox_partition", "topic", "partition", "id"),
        sqlite_autoincrement=True,  # ids never reused, so logs and ids stay unambiguous
        comment="ferryman: encoded records waiting for the relay to publish them",
    )


def encode_headers(headers: Headers) -> bytes:
    """Headers as one blob: a count, then length-prefixed name (UTF-8) and value per header."""
    parts = [struct.pack(">I", len(headers))]
    for name, value in headers:
        raw = name.encode()
        parts.append(struct.pack(">I", len(raw)) + raw + struct.pack(">I", len(value)) + value)
    return b"".join(parts)


def decode_headers(blob: bytes) -> Headers:
    """The inverse of ``encode_headers``."""
    (count,) = struct.unpack_from(">I", blob, 0)
    pos = 4
    out: list[tuple[str, bytes]] = []
    for _ in range(count):
        (n,) = struct.unpack_from(">I", blob, pos)
        name = blob[pos + 4 : pos + 4 + n].decode()
        pos += 4 + n
        (m,) = struct.unpack_from(">I", blob, pos)
        out.append((name, bytes(blob[pos + 4 : pos + 4 + m])))
        pos += 4 + m
    return tuple(out)


_wakeups: weakref.WeakKeyDictionary[Database, threading.Event] = weakref.WeakKeyDictionary()
_wakeups_lock = threading.Lock()


def wakeup_event(database: Database) -> threading.Event:
    """The in-process event writers set after committing outbox rows and relays wait on."""
    with _wakeups_lock:
        found = _wakeups.get(database)
        if found is None:
            found = _wakeups[database] = threading.Event()
        return found


PartitionCounts = Callable[[str], int] | Mapping[str, int]


class Outbox:
    """Writes ``OutboxRecord``s into ``ferryman_outbox`` inside the caller's transaction.

    ``partitions`` gives a topic's partition count (a mapping, or a callable such as
    ``lambda t: admin.describe_topic(t).partitions``); counts are cached per topic.
    """

    def __init__(self, database: Database, partitions: PartitionCounts) -> None:
        self.database = database
        self.table = outbox_table(database.metadata)
        # The relays' tables too, so that they are created (and migrated) with the outbox.
        leases_table(database.metadata)
        relays_table(database.metadata)
        self._partitions = partitions
        self._counts: dict[str, int] = {}
        self._wakeup = wakeup_event(database)

    def write(self, where: Session | Connection, *records: OutboxRecord) -> None:
        """Insert ``records`` in the transaction of ``where`` (a Session or a Connection).

        Nothing is visible to the relay until that transaction commits; after a rollback there is
        nothing to relay. Write all of a transaction's records in one call where you can: on
        PostgreSQL each call locks the partitions it writes until commit, in one order.
        """
        if not records:
            return
        conn = where.connection() if isinstance(where, Session) else where
        now = dt.datetime.now(dt.UTC)
        now_ms = int(now.timestamp() * 1000)
        rows: list[dict[str, Any]] = []
        for record in records:
            partition = self._partition(record)
            rows.append(
                {
                    "topic": record.topic,
                    "partition": partition,
                    "key": record.key,
                    "value": record.value,
                    "headers": encode_headers(record.headers),
                    "timestamp_ms": record.timestamp_ms if record.timestamp_ms else now_ms,
                    "created_at": now,
                }
            )
        if conn.dialect.name == "postgresql":
            for topic, partition in sorted({(r["topic"], r["partition"]) for r in rows}):
                conn.execute(_PARTITION_LOCK, {"name": f"/ferryman.outbox/{topic}/{partition}"})
            conn.execute(_NOTIFY, {"channel": NOTIFY_CHANNEL})
        conn.execute(insert(self.table), rows)
        self._wake_after_commit(where)

    def _partition(self, record: OutboxRecord) -> int:
        count = self.partition_count(record.topic)
        if record.partition is not None:
            if not 0 <= record.partition < count:
                raise ConfigError(
                    f"outbox record for {record.topic!r} names partition {record.partition}, "
                    f"but the topic has {count} (0..{count - 1}); leave partition=None to "
                    "partition by key"
                )
            return record.partition
        if record.key is None:
            return random.randrange(count)  # unkeyed: any partition, to spread load
        return partition_for(record.key, count)

    def partition_count(self, topic: str) -> int:
        """The partition count of ``topic``, asked once and cached."""
        count = self._counts.get(topic)
        if count is None:
            source = self._partitions
            try:
                count = source[topic] if isinstance(source, Mapping) else source(topic)
            except KeyError as exc:
                raise StoreError(
                    f"the outbox does not know how many partitions topic {topic!r} has; "
                    "declare the topic (or add it to the outbox's partition counts)"
                ) from exc
            if count < 1:
                raise StoreError(f"topic {topic!r} has {count} partitions; it needs at least 1")
            self._counts[topic] = count
        return count

    def _wake_after_commit(self, where: Session | Connection) -> None:
        wake = self._wakeup.set
        if isinstance(where, Session):
            if not sa_event.contains(where, "after_commit", _set_wakeups):
                sa_event.listen(where, "after_commit", _set_wakeups)
            where.info.setdefault("ferryman_outbox_wakeups", set()).add(wake)
        else:
            # A Connection has no after-commit event; waking the relay now costs it at most one
            # empty look before the commit, and its short poll catches the rows right after.
            wake()


def _set_wakeups(session: Session) -> None:
    for wake in session.info.pop("ferryman_outbox_wakeups", ()):
        wake()
