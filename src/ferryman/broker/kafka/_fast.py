"""Quick construction of the frozen record types on the hot paths of producing and consuming.

A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``, which costs
more per record than librdkafka's own work; these builders set the slots directly and make the
same, equal objects. Should a type stop having exactly these slots, its constructor is used.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from types import MemberDescriptorType
from typing import Any

from ferryman.records import Headers, Record, RecordMetadata

_new = object.__new__


def _setters(cls: type, names: tuple[str, ...]) -> list[Callable[[Any, Any], None]] | None:
    """The slot setters of ``cls`` in field order, if its fields are exactly ``names``."""
    if tuple(f.name for f in dataclasses.fields(cls)) != names:
        return None
    slots = [cls.__dict__.get(name) for name in names]
    if not all(isinstance(s, MemberDescriptorType) for s in slots):
        return None
    return [s.__set__ for s in slots]  # type: ignore[union-attr]


def _record_builder() -> Callable[
    [str, int, int, bytes | None, bytes | None, Headers, int], Record
]:
    setters = _setters(
        Record, ("topic", "partition", "offset", "key", "value", "headers", "timestamp")
    )
    if setters is None:
        return Record
    s_topic, s_partition, s_offset, s_key, s_value, s_headers, s_timestamp = setters

    def make_record(
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: Headers,
        timestamp: int,
    ) -> Record:
        r: Record = _new(Record)
        s_topic(r, topic)
        s_partition(r, partition)
        s_offset(r, offset)
        s_key(r, key)
        s_value(r, value)
        s_headers(r, headers)
        s_timestamp(r, timestamp)
        return r

    return make_record


def _metadata_builder() -> Callable[[str, int, int, int], RecordMetadata]:
    setters = _setters(RecordMetadata, ("topic", "partition", "offset", "timestamp"))
    if setters is None:
        return RecordMetadata
    s_topic, s_partition, s_offset, s_timestamp = setters

    def make_metadata(topic: str, partition: int, offset: int, timestamp: int) -> RecordMetadata:
        m: RecordMetadata = _new(RecordMetadata)
        s_topic(m, topic)
        s_partition(m, partition)
        s_offset(m, offset)
        s_timestamp(m, timestamp)
        return m

    return make_metadata


make_record = _record_builder()
make_metadata = _metadata_builder()
