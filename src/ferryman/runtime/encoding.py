"""One record, checked and encoded as a service sends it: the path that direct sends and the
outbox share, so both refuse the same values and carry the same headers and timestamps."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

from ferryman.errors import ConfigError, SchemaError
from ferryman.records import Headers
from ferryman.runtime.headers import MESSAGE_ID, SOURCE, new_id_bytes
from ferryman.runtime.serde import Serde
from ferryman.topics import EntityTopic, RequestTopic, Topic

FROM_VALUE: Any = object()
"""The ``key`` to encode when the key is the value's own key field (publish, emit)."""


class EncodedRecord(NamedTuple):
    """A record ready for a producer or the outbox: encoded key and value (None: a tombstone),
    headers including ``ferryman.message-id`` and ``ferryman.source``, timestamp in epoch ms."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int


# A named tuple's own __new__ is a Python function (0.4 us); tuple.__new__ builds it directly.
_as_encoded = tuple.__new__


def encode_record(
    serde: Serde,
    topic: Topic[Any],
    value: Any,
    key: Any,
    headers: Mapping[str, bytes | str] | None,
    timestamp: datetime | float | None,
    source: bytes,
    allow_expired: bool = False,
    prepare: Callable[[], None] | None = None,
) -> EncodedRecord:
    """Check and encode one record of ``topic``; ``value=None`` with a key is a tombstone.

    Raises SchemaError for a value or key that does not fit the topic, ConfigError for a bad
    timestamp or one older than the topic's retention (unless ``allow_expired``). ``prepare``
    runs between the checks that need no I/O and the encoding (which registers schemas): a
    sender creates the topic there, so a refused value never creates one."""
    if value is None and key is FROM_VALUE:
        raise SchemaError(
            f"{topic.kind} {topic.name!r} carries {topic.model.__name__}, not None; pass a "
            f"{topic.model.__name__}"
            + (
                ", or delete(topic, key=...) to delete an entity (a tombstone)"
                if isinstance(topic, EntityTopic)
                else ""
            )
        )
    if timestamp is None:
        when = int(time.time() * 1000)
    else:
        when = timestamp_ms(timestamp)
        if not allow_expired:
            check_retention(topic, when)
    if prepare is not None:
        prepare()
    payload: bytes | None
    if key is FROM_VALUE:
        raw_key, payload = serde.encode_keyed(topic, value)
    else:
        payload = None if value is None else serde.encode_value(topic, value)
        raw_key = serde.encode_key(topic, key)
    sent: Headers = ((MESSAGE_ID, new_id_bytes()), (SOURCE, source))
    if headers:
        sent += tuple((k, v.encode() if isinstance(v, str) else v) for k, v in headers.items())
    return _as_encoded(EncodedRecord, (topic.name, raw_key, payload, sent, when))


def expect_kind(topic: Any, kind: type, call: str, other: str) -> None:
    """Raise ConfigError when ``topic`` is not a ``kind`` (``call`` takes it; ``other`` fits)."""
    if not isinstance(topic, kind):
        raise ConfigError(
            f"{call}() takes a {kind.__name__}, got {topic!r}; use {other}() for that kind of topic"
            if not isinstance(topic, RequestTopic)
            else f"{call}() takes a {kind.__name__}, got {topic!r}; use request() for requests"
        )


def check_retention(topic: Topic[Any], timestamp: int) -> None:
    """Refuse a record older than its topic's time retention: the next retention pass would
    delete it, possibly before anyone read it."""
    if "delete" not in topic.config.get("cleanup.policy", "delete").split(","):
        return
    retention = int(topic.config.get("retention.ms", "-1"))
    if retention < 0:
        return
    age = int(time.time() * 1000) - timestamp
    if age > retention:
        raise ConfigError(
            f"{topic.kind} {topic.name!r} keeps records for retention.ms={retention} "
            f"({_duration(retention)}), but this record's timestamp is {_duration(age)} old: "
            "the next retention pass would delete it, possibly before anyone reads it. For a "
            "backfill, declare the topic with a longer retention (config={'retention.ms': ...}), "
            "or pass allow_expired=True to send it anyway"
        )


def _duration(ms: int) -> str:
    for unit, size in (("days", 86_400_000), ("hours", 3_600_000), ("minutes", 60_000)):
        if ms >= size:
            return f"{ms / size:.1f} {unit}"
    return f"{ms / 1000:.1f} seconds"


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


def declare_once(declared: dict[str, Topic[Any]], topic: Topic[Any], owner: str) -> None:
    """Record ``topic`` in ``declared``, refusing a second, different declaration of its name:
    codecs are cached by name, so it would silently be bound to the first declaration's model."""
    known = declared.setdefault(topic.name, topic)
    if known is topic:
        return
    if type(known) is not type(topic) or known.model is not topic.model:
        raise ConfigError(
            f"service {owner!r} has two declarations of topic {topic.name!r}: "
            f"{known!r} and {topic!r}; a topic carries one model: declare it once "
            "(in one module) and import that declaration everywhere"
        )
    if known.key_type is not topic.key_type:
        raise ConfigError(
            f"service {owner!r} has two declarations of topic {topic.name!r} with "
            f"different key types ({_type_name(known.key_type)} and "
            f"{_type_name(topic.key_type)}); declare it once and import that declaration"
        )


def _type_name(t: type | None) -> str:
    return "no key" if t is None else t.__name__
