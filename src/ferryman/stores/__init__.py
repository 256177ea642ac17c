"""Stores: the service's own database (SQLAlchemy 2, SQLite or PostgreSQL).

``Database`` holds the engine, session factory and MetaData; ``Mirror`` keeps an entity topic as
a table, with the consumed offsets in the same transaction (``OffsetStore``); ``JoinedTable``
joins several topics by partial writes and a ``Republisher`` publishes its changed rows;
``Outbox`` writes records in the caller's transaction and ``Relay`` publishes them;
``TablePoller`` reads a legacy table's changes by an ``(updated_at, id)`` watermark.
"""

from ferryman.stores.database import Database
from ferryman.stores.dirty import DIRTY_TABLE, dirty_table
from ferryman.stores.joins import JOIN_KEYS_TABLE, JoinedRow, JoinedTable, Part, join_keys_table
from ferryman.stores.leases import LEASES_TABLE, RELAYS_TABLE
from ferryman.stores.mirror import Applied, Mirror, MirrorRecord, Poisoned
from ferryman.stores.offsets import OFFSETS_TABLE, OffsetStore, offsets_table
from ferryman.stores.outbox import OUTBOX_TABLE, Outbox, OutboxRecord, outbox_table
from ferryman.stores.poller import POLLERS_TABLE, TablePoller
from ferryman.stores.relay import Relay
from ferryman.stores.republisher import Build, Republisher, Send
from ferryman.stores.tables import (
    FieldColumn,
    Row,
    check_table,
    field_columns,
    table_from_model,
)

__all__ = [
    "DIRTY_TABLE",
    "JOIN_KEYS_TABLE",
    "LEASES_TABLE",
    "OFFSETS_TABLE",
    "OUTBOX_TABLE",
    "POLLERS_TABLE",
    "RELAYS_TABLE",
    "Applied",
    "Build",
    "Database",
    "FieldColumn",
    "JoinedRow",
    "JoinedTable",
    "Mirror",
    "MirrorRecord",
    "OffsetStore",
    "Outbox",
    "OutboxRecord",
    "Part",
    "Poisoned",
    "Relay",
    "Republisher",
    "Row",
    "Send",
    "TablePoller",
    "check_table",
    "dirty_table",
    "field_columns",
    "join_keys_table",
    "offsets_table",
    "outbox_table",
    "table_from_model",
]
