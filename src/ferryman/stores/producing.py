"""Producing through the outbox: a writer with the service's ``publish``/``delete``/``emit`` that
writes encoded records into the caller's transaction instead of sending them.

The service hands down how it encodes (``Encode``: the same checks, schemas, headers and
timestamps as its direct sends), so stores know nothing of the runtime.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Literal, TypeVar

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from ferryman.stores.outbox import Outbox, OutboxRecord
from ferryman.topics import EntityTopic, EventTopic

T = TypeVar("T")

Call = Literal["publish", "delete", "emit"]
Encode = Callable[
    [Call, Any, Any, Mapping[str, bytes | str] | None, datetime | float | None, bool],
    OutboxRecord,
]
"""``encode(call, topic, value_or_key, headers, timestamp, allow_expired)``: the record that
``call`` would send, checked (SchemaError, ConfigError) and encoded; topics created or checked."""


class OutboxWriter:
    """``publish``, ``delete`` and ``emit`` into the transaction of one Session (or Connection):
    the records are relayed after it commits, and never if it rolls back."""

    def __init__(self, outbox: Outbox, encode: Encode, where: Session | Connection) -> None:
        self._outbox = outbox
        self._encode = encode
        self.where = where

    def publish(
        self,
        topic: EntityTopic[T],
        value: T,
        *,
        headers: Mapping[str, bytes | str] | None = None,
        timestamp: datetime | float | None = None,
        allow_expired: bool = False,
    ) -> None:
        """Upsert an entity when the transaction commits."""
        self.write(self._encode("publish", topic, value, headers, timestamp, allow_expired))

    def delete(
        self,
        topic: EntityTopic[T],
        key: Any,
        *,
        headers: Mapping[str, bytes | str] | None = None,
        timestamp: datetime | float | None = None,
        allow_expired: bool = False,
    ) -> None:
        """Delete the entity with ``key`` (a tombstone) when the transaction commits."""
        self.write(self._encode("delete", topic, key, headers, timestamp, allow_expired))

    def emit(
        self,
        topic: EventTopic[T],
        value: T,
        *,
        headers: Mapping[str, bytes | str] | None = None,
        timestamp: datetime | float | None = None,
        allow_expired: bool = False,
    ) -> None:
        """Emit an event when the transaction commits; ``timestamp`` is when it happened."""
        self.write(self._encode("emit", topic, value, headers, timestamp, allow_expired))

    def write(self, *records: OutboxRecord) -> None:
        """Write already encoded records into the transaction."""
        self._outbox.write(self.where, *records)

    def __repr__(self) -> str:
        return f"OutboxWriter({self._outbox.database!r})"
