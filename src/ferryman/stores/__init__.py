"""Stores: the service's own database (SQLAlchemy 2, SQLite or PostgreSQL).

``Database`` holds the engine, session factory and MetaData; ``Mirror`` keeps an entity topic as
a table, with the consumed offsets in the same transaction (``OffsetStore``); ``Outbox`` writes
records in the caller's transaction and ``Relay`` publishes them; ``TablePoller`` reads a legacy
table's changes by an ``(updated_at, id)`` watermark.
"""

from ferryman.stores.database import Database
from ferryman.stores.leases import LEASES_TABLE, RELAYS_TABLE
from ferryman.stores.mirror import Applied, Mirror, MirrorRecord, Poisoned
from ferryman.stores.offsets import OFFSETS_TABLE, OffsetStore, offsets_table
from ferryman.stores.outbox import OUTBOX_TABLE, Outbox, OutboxRecord, outbox_table
from ferryman.stores.poller import POLLERS_TABLE, TablePoller
from ferryman.stores.relay import Relay
from ferryman.stores.tables import FieldColumn, check_table, field_columns, table_from_model

__all__ = [
    "LEASES_TABLE",
    "OFFSETS_TABLE",
    "OUTBOX_TABLE",
    "POLLERS_TABLE",
    "RELAYS_TABLE",
    "Applied",
    "Database",
    "FieldColumn",
    "Mirror",
    "MirrorRecord",
    "OffsetStore",
    "Outbox",
    "OutboxRecord",
    "Poisoned",
    "Relay",
    "TablePoller",
    "check_table",
    "field_columns",
    "offsets_table",
    "outbox_table",
    "table_from_model",
]
