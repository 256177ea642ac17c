"""Dead letters: a record that could not be handled goes to ``<topic>.dlq`` with why and where.

The dead letter keeps the original key, value and headers, in the same partition number (the
DLQ has the source's partition count), and adds ``ferryman.dlq.*`` headers: the original topic,
partition, offset and timestamp, the consumer group, the exception's type, message and
traceback, and how many attempts were made (0: the record could not be decoded). Its own
timestamp is the time it was dead-lettered: retention goes by record timestamps, so a dead
letter with its original's would be deleted at once when the original is older than the DLQ's
retention.
"""

from __future__ import annotations

import time
import traceback
from concurrent.futures import Future

from ferryman.broker.base import Producer
from ferryman.errors import FerrymanError
from ferryman.records import Headers, Record, RecordMetadata, TopicSpec
from ferryman.runtime.headers import (
    DLQ_ATTEMPTS,
    DLQ_EXCEPTION_MESSAGE,
    DLQ_EXCEPTION_TYPE,
    DLQ_GROUP,
    DLQ_OFFSET,
    DLQ_ORIGINAL_TIMESTAMP,
    DLQ_PARTITION,
    DLQ_TOPIC,
    DLQ_TRACEBACK,
)
from ferryman.topics import DAY_MS, Topic, dlq_name

DLQ_RETENTION_MS = 14 * DAY_MS


def dlq_spec(topic: Topic[object]) -> TopicSpec:
    """The dead-letter topic of ``topic``: as many partitions, kept 14 days."""
    return TopicSpec(
        dlq_name(topic.name),
        topic.partitions,
        {"cleanup.policy": "delete", "retention.ms": str(DLQ_RETENTION_MS)},
    )


def dead_letter(
    producer: Producer, record: Record, group: str, exc: BaseException, attempts: int
) -> Future[RecordMetadata]:
    """Send ``record`` to its topic's DLQ; the future resolves once that is durable."""
    headers: Headers = (
        *record.headers,
        (DLQ_TOPIC, record.topic.encode()),
        (DLQ_PARTITION, str(record.partition).encode()),
        (DLQ_OFFSET, str(record.offset).encode()),
        (DLQ_ORIGINAL_TIMESTAMP, str(record.timestamp).encode()),
        (DLQ_GROUP, _utf8(group)),
        (DLQ_EXCEPTION_TYPE, _utf8(exception_type(exc))),
        (DLQ_EXCEPTION_MESSAGE, _utf8(str(exc))),
        (DLQ_TRACEBACK, _utf8("".join(traceback.format_exception(exc)))),
        (DLQ_ATTEMPTS, str(attempts).encode()),
    )
    return producer.send(
        dlq_name(record.topic),
        record.value,
        key=record.key,
        headers=headers,
        partition=record.partition,
        timestamp=int(time.time() * 1000),
    )


def exception_type(exc: BaseException) -> str:
    """The exception's type as a user would write it: ``ValueError``, ``ferryman.DecodeError``,
    ``myapp.errors.OutOfStock``."""
    cls = type(exc)
    if cls.__module__ in ("builtins", "__main__"):
        return cls.__qualname__
    if isinstance(exc, FerrymanError):
        return f"ferryman.{cls.__qualname__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def _utf8(text: str) -> bytes:
    """UTF-8, with lone surrogates (from undecodable file names, say) written as ``\\udcff``:
    a strict encode would fail the dead letter, and with it the consumer."""
    return text.encode(errors="backslashreplace")
