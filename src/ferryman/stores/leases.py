"""Partition leases for outbox relays: which relay publishes which outbox partition, until when.

Relays announce themselves in ``ferryman_outbox_relays`` (a heartbeat with an expiry) and split
the partitions that have rows by rank: the relay of rank ``r`` of ``n`` live relays takes the
partitions whose slot modulo ``n`` is ``r``, each through a lease row in
``ferryman_outbox_leases`` that it renews before every batch. A relay that dies stops renewing;
once its lease expires, the relay whose share the partition now is takes it.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    delete,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from ferryman.records import TopicPartition

LEASES_TABLE = "ferryman_outbox_leases"
RELAYS_TABLE = "ferryman_outbox_relays"


def leases_table(metadata: MetaData) -> Table:
    """The ``ferryman_outbox_leases`` table on ``metadata`` (declared once, reused after)."""
    existing = metadata.tables.get(LEASES_TABLE)
    if existing is not None:
        return existing
    return Table(
        LEASES_TABLE,
        metadata,
        Column("topic", String(255), primary_key=True),
        Column("partition", Integer, primary_key=True, autoincrement=False),
        Column("owner", String(255), nullable=False),
        Column("expires_at_ms", BigInteger, nullable=False),
        comment="ferryman: which outbox relay publishes which partition, until when",
    )


def relays_table(metadata: MetaData) -> Table:
    """The ``ferryman_outbox_relays`` table (relay heartbeats) on ``metadata``."""
    existing = metadata.tables.get(RELAYS_TABLE)
    if existing is not None:
        return existing
    return Table(
        RELAYS_TABLE,
        metadata,
        Column("owner", String(255), primary_key=True),
        Column("expires_at_ms", BigInteger, nullable=False),
        comment="ferryman: live outbox relays, so that they can split the partitions",
    )


def slot(tp: TopicPartition) -> int:
    """A stable number per partition; consecutive partitions of a topic get consecutive slots,
    so ``slot % relays`` spreads a topic's partitions evenly."""
    return zlib.crc32(tp.topic.encode()) + tp.partition


class Leases:
    """Heartbeats and partition leases of one relay (``owner``), in the caller's transaction."""

    def __init__(self, metadata: MetaData, owner: str, lease_ms: int) -> None:
        self.leases = leases_table(metadata)
        self.relays = relays_table(metadata)
        self.owner = owner
        self.lease_ms = lease_ms

    def assign(
        self, conn: Connection, candidates: Iterable[TopicPartition], now_ms: int
    ) -> set[TopicPartition]:
        """Heartbeat, release the leases outside this relay's share, take the free or expired
        ones inside it; returns the partitions this relay holds now."""
        expires = now_ms + self.lease_ms
        _upsert(conn, self.relays, {"owner": self.owner, "expires_at_ms": expires})
        conn.execute(delete(self.relays).where(self.relays.c.expires_at_ms <= now_ms))
        live = list(conn.scalars(select(self.relays.c.owner).order_by(self.relays.c.owner)))
        rank, n = live.index(self.owner), len(live)
        held = self.held(conn, now_ms)
        mine = {tp for tp in set(candidates) | held if slot(tp) % n == rank}
        for tp in sorted(held - mine):
            self._release(conn, tp)
        for tp in sorted(mine):
            _upsert(
                conn,
                self.leases,
                {
                    "topic": tp.topic,
                    "partition": tp.partition,
                    "owner": self.owner,
                    "expires_at_ms": expires,
                },
                only_if=or_(
                    self.leases.c.expires_at_ms <= now_ms, self.leases.c.owner == self.owner
                ),
            )
        return self.held(conn, now_ms)

    def held(self, conn: Connection, now_ms: int) -> set[TopicPartition]:
        """The partitions whose unexpired lease this relay holds."""
        t = self.leases
        query = select(t.c.topic, t.c.partition).where(
            t.c.owner == self.owner, t.c.expires_at_ms > now_ms
        )
        return {TopicPartition(topic, p) for topic, p in conn.execute(query)}

    def renew(self, conn: Connection, tp: TopicPartition, now_ms: int) -> bool:
        """Extend this relay's lease on ``tp``; False when another relay took it over.

        An expired lease that no one took is still this relay's: nobody else sent its rows."""
        t = self.leases
        result = conn.execute(
            update(t)
            .where(t.c.topic == tp.topic, t.c.partition == tp.partition, t.c.owner == self.owner)
            .values(expires_at_ms=now_ms + self.lease_ms)
        )
        return result.rowcount == 1

    def release_all(self, conn: Connection) -> None:
        """Give up every lease and the heartbeat, so other relays take over at once."""
        conn.execute(delete(self.leases).where(self.leases.c.owner == self.owner))
        conn.execute(delete(self.relays).where(self.relays.c.owner == self.owner))

    def _release(self, conn: Connection, tp: TopicPartition) -> None:
        t = self.leases
        conn.execute(
            delete(t).where(
                and_(t.c.topic == tp.topic, t.c.partition == tp.partition),
                t.c.owner == self.owner,
            )
        )


def _upsert(conn: Connection, table: Table, row: dict[str, Any], only_if: Any = None) -> None:
    """Insert ``row``, or update the row with its key (only where ``only_if`` holds)."""
    stmt: Any = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(table)
    keys = [c.name for c in table.primary_key.columns]
    values = {c: stmt.excluded[c] for c in row if c not in keys}
    conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=values, where=only_if), row)
