"""Stores: the service's own database (SQLAlchemy 2, SQLite or PostgreSQL).

``Database`` holds the engine, session factory and MetaData; ``Mirror`` keeps an entity topic as
a table, with the consumed offsets in the same transaction (``OffsetStore``).
"""

from ferryman.stores.database import Database
from ferryman.stores.mirror import Applied, Mirror, MirrorRecord, Poisoned
from ferryman.stores.offsets import OFFSETS_TABLE, OffsetStore, offsets_table
from ferryman.stores.tables import FieldColumn, check_table, field_columns, table_from_model

__all__ = [
    "OFFSETS_TABLE",
    "Applied",
    "Database",
    "FieldColumn",
    "Mirror",
    "MirrorRecord",
    "OffsetStore",
    "Poisoned",
    "check_table",
    "field_columns",
    "offsets_table",
    "table_from_model",
]
