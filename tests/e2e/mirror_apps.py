"""Services of the mirror end-to-end tests, run as ``ferryman run mirror_apps:copy
mirror_apps:counter`` (this directory as the working directory).

``copy`` mirrors the accounts topic into its database; ``counter`` counts every record of the
same topic (tombstones too) in a table, with a transactional handler. Where things are comes
from FERRYMAN_BROKER, FERRYMAN_REGISTRY and FERRYMAN_DATABASE; topic names from E2E_SUFFIX.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Integer, MetaData, Table, update
from sqlalchemy.orm import Session

from ferryman.config import ServiceConfig
from ferryman.service import Service
from ferryman.topics import EntityTopic

SUFFIX = os.environ.get("E2E_SUFFIX", "x")
FAST = ServiceConfig(
    commit_interval=0.05,
    shutdown_timeout=10,
    consumer_config={"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"},
)


@dataclass
class Account:
    id: int
    owner: str
    balance: int


# The counter counts every record, so the log must keep every record until it is read: an
# entity topic is compacted, and a compaction lag of 0 (Kafka's default, and the topic's) lets
# the embedded broker's cleaner drop superseded updates a lagging counter has not read yet. On a
# slow host in CI it did, and the count came out 40,572 of 50,000 with every offset consumed.
accounts = EntityTopic(
    f"e2e.accounts.{SUFFIX}",
    Account,
    key="id",
    partitions=4,
    config={"min.compaction.lag.ms": 86_400_000},
)

copy = Service(f"e2e-copy-{SUFFIX}", config=FAST)
copy.mirror(accounts)

counter = Service(f"e2e-counter-{SUFFIX}", config=FAST)
counts = Table(
    "record_counts",
    MetaData(),
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("records", BigInteger, nullable=False),
)


@counter.on(accounts)
def count(account: Account | None, session: Session) -> None:
    session.execute(update(counts).where(counts.c.id == 1).values(records=counts.c.records + 1))


def create_counts() -> None:
    """The counter's table with its one row (the test creates it before any process starts)."""
    with counter.database.begin() as conn:
        counts.create(conn, checkfirst=True)
        conn.execute(counts.insert().values(id=1, records=0))
    counter.database.dispose()
