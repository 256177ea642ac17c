"""Value types for what travels through the log: records, their coordinates and acknowledgements.

These are raw (bytes) records as the broker layer sees them. Decoded, typed messages are
built on top of them by the runtime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

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

    A named tuple rather than a frozen dataclass: both are immutable, but a consumer builds
    hundreds of thousands of these a second and a tuple is built several times faster.
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
    """A topic as it exists on the broker."""

    name: str
    partitions: int
    config: dict[str, str]


@dataclass(frozen=True, slots=True)
class PartitionOffsets:
    """The bounds of one partition: ``earliest`` is the log start offset, ``latest`` the high
    watermark (the offset the next record will get). ``latest - earliest`` is an upper bound of
    the records present (compaction leaves gaps)."""

    earliest: int
    latest: int
