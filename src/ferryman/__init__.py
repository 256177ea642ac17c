"""ferryman: event-driven Python services over a message log.

The public API: re-exports and ``__all__``, nothing else.
"""

from ferryman.errors import (
    BrokerError,
    BrokerUnavailable,
    ConfigError,
    DecodeError,
    FerrymanError,
    IncompatibleSchema,
    RemoteError,
    RequestTimeout,
    SchemaError,
)
from ferryman.records import Record, RecordMetadata, TopicPartition

__all__ = [
    "BrokerError",
    "BrokerUnavailable",
    "ConfigError",
    "DecodeError",
    "FerrymanError",
    "IncompatibleSchema",
    "Record",
    "RecordMetadata",
    "RemoteError",
    "RequestTimeout",
    "SchemaError",
    "TopicPartition",
]
