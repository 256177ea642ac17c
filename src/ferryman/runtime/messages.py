"""What a handler can see of a consumed record, and the ``ferryman.`` headers ferryman sets."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from ferryman.records import Headers

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
DLQ_GROUP = "ferryman.dlq.group"
DLQ_EXCEPTION_TYPE = "ferryman.dlq.exception-type"
DLQ_EXCEPTION_MESSAGE = "ferryman.dlq.exception-message"
DLQ_TRACEBACK = "ferryman.dlq.traceback"
DLQ_ATTEMPTS = "ferryman.dlq.attempts"


@dataclass(frozen=True, slots=True)
class Message(Generic[T]):
    """A decoded record: its value (None for a tombstone), decoded key and coordinates."""

    topic: str
    partition: int
    offset: int
    key: Any
    value: T | None
    headers: Headers
    timestamp: int

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


def timestamp_ms(when: datetime | float | int | None) -> int:
    """Milliseconds since the epoch of ``when`` (a datetime, or epoch ms); now when None."""
    if when is None:
        return int(time.time() * 1000)
    if isinstance(when, datetime):
        return int(when.timestamp() * 1000)
    return int(when)
