"""ferryman: event-driven Python services over a message log.

The public API: re-exports and ``__all__``, nothing else.
"""

from ferryman.config import ServiceConfig
from ferryman.errors import (
    BrokerError,
    BrokerUnavailable,
    CommitFailed,
    ConfigError,
    DecodeError,
    FerrymanError,
    GroupBusy,
    HandlerError,
    IncompatibleSchema,
    MirrorSchemaError,
    PoisonedRecord,
    ProduceError,
    RecordRejected,
    RegistryError,
    RemoteError,
    RequestTimeout,
    SchemaError,
    StorageError,
    StoreError,
    TopicDeclarationError,
    TopicMismatch,
)
from ferryman.records import Record, RecordBatch, RecordMetadata, TopicPartition
from ferryman.rpc.requester import PendingReply
from ferryman.runtime.delivery import Delivery
from ferryman.runtime.message import Message
from ferryman.service.core import Service
from ferryman.service.running import run_services
from ferryman.topics import EntityTopic, EventTopic, RequestTopic

__all__ = [
    "BrokerError",
    "BrokerUnavailable",
    "CommitFailed",
    "ConfigError",
    "DecodeError",
    "Delivery",
    "EntityTopic",
    "EventTopic",
    "FerrymanError",
    "GroupBusy",
    "HandlerError",
    "IncompatibleSchema",
    "Message",
    "MirrorSchemaError",
    "PendingReply",
    "PoisonedRecord",
    "ProduceError",
    "Record",
    "RecordBatch",
    "RecordMetadata",
    "RecordRejected",
    "RegistryError",
    "RemoteError",
    "RequestTimeout",
    "RequestTopic",
    "SchemaError",
    "Service",
    "ServiceConfig",
    "StorageError",
    "StoreError",
    "TopicDeclarationError",
    "TopicMismatch",
    "TopicPartition",
    "run_services",
]
