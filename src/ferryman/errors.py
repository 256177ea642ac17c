"""The one exception tree of ferryman.

Every error a user can meet says what was wrong and what to do about it::

    FerrymanError
     ├── ConfigError                 a bad argument, URL, environment variable or declaration
     │    └── TopicDeclarationError   a topic declared against the rules of its kind
     ├── BrokerError                 anything the message log refused or could not do
     │    ├── BrokerUnavailable       the broker cannot be reached (dead, wrong address, timeout)
     │    ├── TopicError
     │    │    ├── UnknownTopic
     │    │    ├── TopicExists
     │    │    ├── InvalidTopic        a bad topic name, partition count or config
     │    │    └── TopicMismatch       an existing topic differs from its declaration
     │    ├── UnknownPartition        a partition outside the topic's range
     │    ├── ProduceError            a record was not acknowledged
     │    ├── CommitFailed            offsets could not be committed (e.g. partition revoked)
     │    ├── GroupBusy               a group's offsets cannot be reset while it has live members
     │    ├── ClientClosed            a producer/consumer/admin used after close()
     │    └── StorageError            the embedded broker's file is corrupt or unwritable
     │         └── IncompatibleStorage  the file was written by an incompatible ferryman version
     ├── SchemaError                 a value does not fit its schema, or a schema is invalid
     │    ├── IncompatibleSchema      a schema change breaks the subject's compatibility rule
     │    ├── SchemaNotFound          an unknown subject, version or schema id
     │    ├── RegistryError           the schema registry failed or cannot be reached
     │    └── DecodeError             a consumed message cannot be decoded (carries its coordinates)
     ├── StoreError                  the service's database refused or cannot hold what a store writes
     │    ├── MirrorSchemaError       a mirror's table lacks columns its topic's model needs
     │    └── PoisonedRecord          a record a mirror cannot apply (its run rolled back)
     ├── HandlerError                a handler failed and the service is set to stop on error
     ├── RecordRejected              a record that can never be handled: dead-lettered, not retried
     ├── RequestTimeout              no reply to a request within its timeout
     └── RemoteError                 the responder raised; carries the remote type and message
"""

from __future__ import annotations


class FerrymanError(Exception):
    """Base class of every error ferryman raises."""


class ConfigError(FerrymanError):
    """A bad argument, URL, environment variable or declaration."""


class TopicDeclarationError(ConfigError):
    """A topic was declared against the rules of its kind."""


class BrokerError(FerrymanError):
    """The message log refused an operation or could not perform it."""


class BrokerUnavailable(BrokerError):
    """The broker cannot be reached."""


class TopicError(BrokerError):
    """A problem with a topic."""


class UnknownTopic(TopicError):
    """The topic does not exist."""


class TopicExists(TopicError):
    """The topic already exists."""


class InvalidTopic(TopicError):
    """A bad topic name, partition count or topic config."""


class TopicMismatch(TopicError):
    """An existing topic differs from the way it is declared (partitions, cleanup policy, ...)."""


class UnknownPartition(BrokerError):
    """A partition number outside the topic's range."""


class ProduceError(BrokerError):
    """A record was not acknowledged by the broker."""


class CommitFailed(BrokerError):
    """Offsets could not be committed, for example because the partition was revoked."""


class GroupBusy(BrokerError):
    """A consumer group's offsets cannot be changed while it has live members."""


class ClientClosed(BrokerError):
    """A producer, consumer or admin client was used after it was closed."""


class StorageError(BrokerError):
    """The embedded broker's database file is corrupt, unreadable or unwritable."""


class IncompatibleStorage(StorageError):
    """The embedded broker's file was written by an incompatible version of ferryman."""


class SchemaError(FerrymanError):
    """A value does not fit its schema, or a schema is invalid."""


class IncompatibleSchema(SchemaError):
    """A schema change breaks the compatibility rule of its subject."""


class SchemaNotFound(SchemaError):
    """An unknown subject, version or schema id."""


class RegistryError(SchemaError):
    """The schema registry failed or cannot be reached."""


class DecodeError(SchemaError):
    """A consumed message cannot be decoded.

    Carries the coordinates of the message so it can be found and dead-lettered.
    """

    def __init__(
        self,
        message: str,
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> None:
        where = ""
        if topic is not None:
            where = f" (topic {topic!r}, partition {partition}, offset {offset})"
        super().__init__(message + where)
        self.topic = topic
        self.partition = partition
        self.offset = offset


class StoreError(FerrymanError):
    """The service's database refused, or cannot hold, what a store (mirror, offsets) writes."""


class PoisonedRecord(StoreError):
    """A record a mirror cannot apply (its transform raised, or the database refused its row):
    its run was rolled back, to be retried, then applied record by record; it is dead-lettered."""


class MirrorSchemaError(StoreError):
    """A mirror's table in the live database lacks columns that its topic's model needs.

    ``missing`` names them; the message says which migration to generate and run.
    """

    def __init__(self, message: str, *, table: str = "", missing: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.table = table
        self.missing = missing


class HandlerError(FerrymanError):
    """A handler failed and the service was configured to stop on error."""


class RecordRejected(FerrymanError):
    """A record that can never be handled (e.g. a request whose reply-to is not its reply
    topic): the consumer dead-letters it at once, without retries."""


class RequestTimeout(FerrymanError):
    """No reply arrived for a request within its timeout."""


class RemoteError(FerrymanError):
    """The responder raised an exception; carries the remote exception's type and message."""

    def __init__(self, remote_type: str, remote_message: str, topic: str = "") -> None:
        where = f" of {topic!r}" if topic else ""
        super().__init__(
            f"the responder{where} raised {remote_type}: {remote_message}; the request was "
            "received and failed there: fix the request or the responder (its log has the "
            "traceback) before sending it again"
        )
        self.remote_type = remote_type
        self.remote_message = remote_message
