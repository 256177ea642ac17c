"""ferryman: event-driven Python services over a message log.

The public API: re-exports and ``__all__``, nothing else.
"""

from ferryman.config import ServiceConfig
from ferryman.errors import (
    BrokerError,
    BrokerUnavailable,
    ConfigError,
    DecodeError,
    FerrymanError,
    HandlerError,
    IncompatibleSchema,
    RemoteError,
    RequestTimeout,
    SchemaError,
    TopicDeclarationError,
)
from ferryman.records import Record, RecordBatch, RecordMetadata, TopicPartition
from ferryman.rpc import PendingReply
from ferryman.runtime.messages import Message
from ferryman.runtime.service import Service
from ferryman.topics import EntityTopic, EventTopic, RequestTopic

__all__ = [
    "BrokerError",
    "BrokerUnavailable",
    "ConfigError",
    "DecodeError",
    "EntityTopic",
    "EventTopic",
    "FerrymanError",
    "HandlerError",
    "IncompatibleSchema",
    "Message",
    "PendingReply",
    "Record",
    "RecordBatch",
    "RecordMetadata",
    "RemoteError",
    "RequestTimeout",
    "RequestTopic",
    "SchemaError",
    "Service",
    "ServiceConfig",
    "TopicDeclarationError",
    "TopicPartition",
]
