"""Stores: the service's own database (SQLAlchemy 2, SQLite or PostgreSQL).

``Database`` holds the engine, session factory and MetaData; ``Mirror`` keeps an entity topic as
a table, with the consumed offsets in the same transaction (``OffsetStore``); ``JoinedTable``
joins several topics by partial writes and a ``Republisher`` publishes its changed rows.
"""

from ferryman.stores.database import Database
from ferryman.stores.dirty import DIRTY_TABLE, dirty_table
from ferryman.stores.joins import JOIN_KEYS_TABLE, JoinedRow, JoinedTable, Part, join_keys_table
from ferryman.stores.mirror import Applied, Mirror, MirrorRecord, Poisoned
from ferryman.stores.offsets import OFFSETS_TABLE, OffsetStore, offsets_table
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
    "OFFSETS_TABLE",
    "Applied",
    "Build",
    "Database",
    "FieldColumn",
    "JoinedRow",
    "JoinedTable",
    "Mirror",
    "MirrorRecord",
    "OffsetStore",
    "Part",
    "Poisoned",
    "Republisher",
    "Row",
    "Send",
    "check_table",
    "dirty_table",
    "field_columns",
    "join_keys_table",
    "offsets_table",
    "table_from_model",
]
