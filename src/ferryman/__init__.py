"""ferryman: event-driven Python services over a message log.

The public API: re-exports and ``__all__``, nothing else.
"""

from ferryman.config import ServiceConfig
from ferryman.errors import (
    BrokerError,
    BrokerUnavailable,
    ClientClosed,
    CommitFailed,
    ConfigError,
    DecodeError,
    FerrymanError,
    GroupBusy,
    HandlerError,
    IncompatibleSchema,
    IncompatibleStorage,
    InvalidTopic,
    MirrorSchemaError,
    PoisonedRecord,
    ProduceError,
    RecordRejected,
    RegistryError,
    RemoteError,
    RequestTimeout,
    SchemaError,
    SchemaNotFound,
    StorageError,
    StoreError,
    TopicDeclarationError,
    TopicError,
    TopicExists,
    TopicMismatch,
    UnknownPartition,
    UnknownTopic,
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
    "ClientClosed",
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
    "IncompatibleStorage",
    "InvalidTopic",
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
    "SchemaNotFound",
    "Service",
    "ServiceConfig",
    "StorageError",
    "StoreError",
    "TopicDeclarationError",
    "TopicError",
    "TopicExists",
    "TopicMismatch",
    "TopicPartition",
    "UnknownPartition",
    "UnknownTopic",
    "run_services",
]
