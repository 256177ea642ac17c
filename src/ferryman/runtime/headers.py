"""What a handler can see of a consumed record, and the ``ferryman.`` headers ferryman sets."""

from __future__ import annotations

import math
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from ferryman.errors import ConfigError
from ferryman.records import Headers
from ferryman.schema.base import Codec, SerdeContext

T = TypeVar("T")

MESSAGE_ID = "ferryman.message-id"
SOURCE = "ferryman.source"
CORRELATION_ID = "ferryman.correlation-id"
REPLY_TO = "ferryman.reply-to"
REQUESTER = "ferryman.requester"
ACK_REQUESTED = "ferryman.ack-requested"
REPLY_KIND = "ferryman.reply-kind"
ERROR_TYPE = "ferryman.error-type"
ERROR_MESSAGE = "ferryman.error-message"
DLQ_TOPIC = "ferryman.dlq.topic"
DLQ_PARTITION = "ferryman.dlq.partition"
DLQ_OFFSET = "ferryman.dlq.offset"
DLQ_ORIGINAL_TIMESTAMP = "ferryman.dlq.original-timestamp"
DLQ_GROUP = "ferryman.dlq.group"
DLQ_EXCEPTION_TYPE = "ferryman.dlq.exception-type"
DLQ_EXCEPTION_MESSAGE = "ferryman.dlq.exception-message"
DLQ_TRACEBACK = "ferryman.dlq.traceback"
DLQ_ATTEMPTS = "ferryman.dlq.attempts"


_UNDECODED: Any = object()


@dataclass(slots=True, eq=False)
class Message(Generic[T]):
    """A decoded record: its value (None for a tombstone), its key and coordinates.

    The key is decoded on first access (most event handlers never look at it), so an
    undecodable key raises DecodeError from ``.key``, inside the handler.
    """

    topic: str
    partition: int
    offset: int
    raw_key: bytes | None
    value: T | None
    headers: Headers
    timestamp: int
    key_codec: Codec | None = field(default=None, repr=False)
    _key: Any = field(default=_UNDECODED, repr=False)

    @property
    def key(self) -> Any:
        """The decoded key (None for an unkeyed record)."""
        if self._key is _UNDECODED:
            raw, codec = self.raw_key, self.key_codec
            if raw is None or codec is None:
                self._key = raw
            else:
                ctx = SerdeContext(self.topic, "key", self.headers, self.partition, self.offset)
                self._key = codec.decode(raw, ctx)
        return self._key

    def header(self, name: str) -> bytes | None:
        """The last value of header ``name``, or None."""
        for k, v in reversed(self.headers):
            if k == name:
                return v
        return None

    @property
    def message_id(self) -> str | None:
        """The ``ferryman.message-id`` the producer gave this record (for de-duplication)."""
        raw = self.header(MESSAGE_ID)
        return None if raw is None else raw.decode()


def new_id() -> str:
    """A random 128-bit id in UUID4 form, for message and correlation ids.

    From ``random`` (reseeded in forked children) rather than ``os.urandom``: the ids need to be
    unique, not secret, and the syscall releases the GIL on the hot path of every send.
    """
    return uuid.UUID(int=random.getrandbits(128), version=4).hex


def timestamp_ms(when: datetime | float | int | None) -> int:
    """Milliseconds since the epoch of ``when`` (a datetime, or epoch ms); now when None.

    Raises ConfigError for what is not a time: NaN, infinities, negative or non-numbers."""
    if when is None:
        return int(time.time() * 1000)
    if isinstance(when, datetime):
        ms = when.timestamp() * 1000
    elif isinstance(when, int | float) and not isinstance(when, bool):
        ms = when
    else:
        raise ConfigError(
            f"timestamp={when!r} is not a time: pass a datetime or epoch milliseconds "
            "(an int >= 0), or omit it for now"
        )
    if not math.isfinite(ms) or ms < 0:
        raise ConfigError(
            f"timestamp={when!r} is not a time a record can carry: pass a datetime at or after "
            "1970-01-01 UTC or epoch milliseconds >= 0 (finite), or omit it for now"
        )
    return int(ms)
