"""Value types for what travels through the log: records, their coordinates and acknowledgements.

These are raw (bytes) records as the broker layer sees them. Decoded, typed messages are
built on top of them by the runtime.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import eq
from typing import NamedTuple, overload

Headers = tuple[tuple[str, bytes], ...]
"""Record headers: an ordered sequence of (name, value) pairs; names may repeat."""


@dataclass(frozen=True, slots=True, order=True)
class TopicPartition:
    """One partition of one topic."""

    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]"


class Record(NamedTuple):
    """A record read from the log, with its coordinates.

    ``value is None`` is a tombstone (on entity topics, a delete); it is not the same as
    ``value == b""``. ``timestamp`` is milliseconds since the epoch: the time the fact happened.

    A named tuple rather than a frozen dataclass: both are immutable, and a tuple is built several
    times faster. A consumer returns each poll's records as a :class:`RecordBatch`, which builds a
    Record only when asked for one; its ``rows`` are the same fields as plain tuples.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    timestamp: int = 0

    @property
    def topic_partition(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    def header(self, name: str) -> bytes | None:
        """The last value of header ``name``, or None."""
        for k, v in reversed(self.headers):
            if k == name:
                return v
        return None


Row = tuple[str, int, int, bytes | None, bytes | None, Headers, int]
"""A record as a plain tuple, in :class:`Record`'s field order:
``(topic, partition, offset, key, value, headers, timestamp)``."""

PendingHeaders = Callable[[], Headers]
"""Headers a consumer has not built as Python objects yet: calling it builds them. See Polled."""

Polled = tuple[str, int, int, bytes | None, bytes | None, Headers | PendingHeaders, int]
"""A row as ``Consumer.poll_rows`` returns it: its headers may still be pending, built when
``headers_of`` asks for them. A handler of values or a mirror never reads a record's headers,
and building them was most of what an embedded poll cost per record (and a tenth of a
Service's CPU per message on Kafka)."""


def headers_of(headers: Headers | PendingHeaders) -> Headers:
    """The headers of a Polled row (``row[5]``), built now if they were pending."""
    return headers if isinstance(headers, tuple) else headers()


def settled(row: Polled) -> Row:
    """``row`` with its headers built: a Row."""
    headers = row[5]
    if isinstance(headers, tuple):
        return row  # type: ignore[return-value]  # its headers are a tuple: a Row
    return (row[0], row[1], row[2], row[3], row[4], headers(), row[6])


# A named tuple's own __new__ is a Python function; tuple.__new__ builds one straight from a row.
_as_record = tuple.__new__


class RecordBatch(Sequence[Record]):
    """The records one poll returned, in the order the log gave them.

    Iterating or indexing gives :class:`Record` objects, built as they are asked for. Code that
    reads records by the hundred thousand (a bulk load, a mirror catching up) can read ``rows``
    instead: the same records as plain tuples in ``Record``'s field order, so that no object is
    built per record (on Kafka that is most of what a consumer costs above librdkafka itself)::

        for topic, partition, offset, key, value, headers, timestamp in batch.rows:
            ...

    A batch compares equal to any sequence of the same records (``consumer.poll() == []``).
    """

    __slots__ = ("_rows",)

    def __init__(self, rows: Iterable[Row] = ()) -> None:
        self._rows: list[Row] = rows if type(rows) is list else list(rows)

    @classmethod
    def of(cls, records: Iterable[Record]) -> RecordBatch:
        """A batch of ``records``."""
        return cls(map(tuple, records))  # type: ignore[arg-type]  # a Record is a Row

    @property
    def rows(self) -> Sequence[Row]:
        """The records as plain tuples, ``(topic, partition, offset, key, value, headers,
        timestamp)``: the fastest way through a batch."""
        return self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[Record]:
        return map(_as_record, repeat(Record), self._rows)

    @overload
    def __getitem__(self, index: int) -> Record: ...

    @overload
    def __getitem__(self, index: slice) -> RecordBatch: ...

    def __getitem__(self, index: int | slice) -> Record | RecordBatch:
        if isinstance(index, slice):
            return RecordBatch(self._rows[index])
        return _as_record(Record, self._rows[index])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RecordBatch):
            return self._rows == other._rows
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            # a Record is a tuple, so it equals its row
            return len(self._rows) == len(other) and all(map(eq, self._rows, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal to lists, which do not hash

    def __repr__(self) -> str:
        return f"RecordBatch({list(self)!r})"


class RecordMetadata(NamedTuple):
    """The broker's acknowledgement of a produced record: where it landed."""

    topic: str
    partition: int
    offset: int
    timestamp: int


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """What a topic should look like: name, partition count and per-topic config.

    ``config`` uses Kafka's topic config names (``cleanup.policy``, ``retention.ms``,
    ``retention.bytes``, ``min.compaction.lag.ms``, ``delete.retention.ms``, ...) with string values,
    on every backend.
    """

    name: str
    partitions: int = 1
    config: dict[str, str] = field(default_factory=dict)
    replication_factor: int | None = None


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """A topic as it exists on the broker; ``defaults`` names the settings in ``config`` that
    are the broker's defaults rather than set on the topic."""

    name: str
    partitions: int
    config: dict[str, str]
    defaults: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class PartitionOffsets:
    """The bounds of one partition: ``earliest`` is the log start offset, ``latest`` the high
    watermark (the offset the next record will get). ``latest - earliest`` is an upper bound of
    the records present (compaction leaves gaps)."""

    earliest: int
    latest: int
