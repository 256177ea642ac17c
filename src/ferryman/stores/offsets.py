"""Consumed offsets kept in the service's database, written in the caller's transaction.

A mirror saves the next offset of each partition in the same transaction as the rows it wrote,
so rows and offsets commit (or roll back) together: after a crash the consumer resumes from
these offsets, not the broker's, and no record is applied twice or skipped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    select,
    text,
    tuple_,
)

from ferryman.errors import StoreError
from ferryman.records import TopicPartition
from ferryman.stores.upsert import upsert

OFFSETS_TABLE = "ferryman_offsets"
# Advisory locks are per database: the schema in the name keeps services in other schemas apart.
_ADVISORY_LOCK = text(
    "SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || :name, 0))"
)


def offsets_table(metadata: MetaData) -> Table:
    """The ``ferryman_offsets`` table on ``metadata`` (declared once, reused after)."""
    existing = metadata.tables.get(OFFSETS_TABLE)
    if existing is not None:
        return existing
    return Table(
        OFFSETS_TABLE,
        metadata,
        Column("consumer_group", String(255), primary_key=True),
        Column("topic", String(255), primary_key=True),
        Column("partition", Integer, primary_key=True, autoincrement=False),
        Column("next_offset", BigInteger, nullable=False),
        # The timestamp (ms) of the last record applied, so lag can be read from the database.
        Column("record_timestamp", BigInteger, nullable=True),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        comment="ferryman: the next offset to consume, per consumer group and partition",
    )


class OffsetStore:
    """Load and save consumed offsets in ``ferryman_offsets``, inside the caller's transaction."""

    def __init__(self, metadata: MetaData) -> None:
        self.table = offsets_table(metadata)

    def load(
        self,
        conn: Connection,
        group: str,
        partitions: Iterable[TopicPartition],
        *,
        lock: bool = False,
    ) -> dict[TopicPartition, int]:
        """The stored next offset of each of ``partitions`` that has one.

        ``lock=True`` holds each partition's lock until the transaction ends, so a consumer that
        lost its partitions but does not know it yet waits for, then sees, the new owner's
        offsets. On PostgreSQL that is a transaction-level advisory lock per partition (a row
        lock would miss a partition whose first offsets are not committed yet); SQLite's
        writer holds the whole file already.
        """
        wanted = sorted(set(partitions))
        if not wanted:
            return {}
        if lock and conn.dialect.name == "postgresql":
            for tp in wanted:  # in one order everywhere, so two lockers cannot deadlock
                conn.execute(_ADVISORY_LOCK, {"name": f"/ferryman.offsets/{group}/{tp}"})
        t = self.table
        query = select(t.c.topic, t.c.partition, t.c.next_offset).where(
            t.c.consumer_group == group,
            tuple_(t.c.topic, t.c.partition).in_([(tp.topic, tp.partition) for tp in wanted]),
        )
        return {TopicPartition(topic, p): offset for topic, p, offset in conn.execute(query)}

    def save(
        self,
        conn: Connection,
        group: str,
        offsets: Mapping[TopicPartition, int],
        timestamps: Mapping[TopicPartition, int] | None = None,
    ) -> None:
        """Store ``offsets`` (the next offset to consume, per partition) as one upsert, with the
        timestamp of the last record applied per partition when known."""
        if not offsets:
            return
        if not group:
            raise StoreError("offsets need a consumer group name; pass the mirror's group")
        now = dt.datetime.now(dt.UTC)
        stamps = timestamps or {}
        rows: list[dict[str, Any]] = [
            {
                "consumer_group": group,
                "topic": tp.topic,
                "partition": tp.partition,
                "next_offset": offset,
                "record_timestamp": stamps.get(tp),
                "updated_at": now,
            }
            for tp, offset in sorted(offsets.items())
        ]
        upsert(conn, self.table, rows, keep_when_null=("record_timestamp",))

    def timestamps(self, conn: Connection, group: str) -> dict[TopicPartition, int]:
        """The timestamp (ms) of the last record applied per partition of ``group``, for lag."""
        t = self.table
        query = select(t.c.topic, t.c.partition, t.c.record_timestamp).where(
            t.c.consumer_group == group, t.c.record_timestamp.is_not(None)
        )
        return {TopicPartition(topic, p): stamp for topic, p, stamp in conn.execute(query)}
