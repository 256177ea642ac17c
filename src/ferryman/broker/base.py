"""The Broker protocol: the one seam between ferryman and a message log.

A backend implements four small interfaces: ``Broker`` (a factory and owner of connections),
``Admin`` (topics, offsets, group lag), ``Producer`` (send, flush) and ``Consumer`` (a group
member: subscribe, poll, commit, seek, pause/resume). Every backend passes the same contract
suite in ``tests/contract/``; see the "Backend contract" in DESIGN.md for the semantics.

The protocol is synchronous and thread-safe where noted: the asyncio runtime drives it from
worker threads, which keeps each backend simple (SQLite and librdkafka are both blocking).

Offsets follow Kafka: a committed offset is the *next* offset to read; ``latest`` is the high
watermark (the offset the next produced record gets).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Literal, Protocol

from ferryman.records import (
    Headers,
    PartitionOffsets,
    Polled,
    RecordBatch,
    RecordMetadata,
    TopicInfo,
    TopicPartition,
    TopicSpec,
)

_LEGAL_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


def is_legal_topic_name(name: object) -> bool:
    """Kafka's rule, on every backend: 1-249 of ``[A-Za-z0-9._-]``, and not ``.`` or ``..``."""
    return (
        isinstance(name, str)
        and name not in {".", ".."}
        and _LEGAL_TOPIC_NAME.fullmatch(name) is not None
    )


OffsetReset = Literal["earliest", "latest"]
RebalanceCallback = Callable[[set[TopicPartition]], None]


@dataclass(frozen=True, slots=True)
class GroupMember:
    """A live member of a consumer group and the partitions it owns."""

    member_id: str
    client: str
    """Who it is, as far as the backend knows (Kafka: client id and host; embedded: empty)."""
    assignment: frozenset[TopicPartition]


class Admin(Protocol):
    """Topic management and offset inspection."""

    def create_topic(self, spec: TopicSpec, *, exist_ok: bool = False) -> None:
        """Create a topic. Raises TopicExists (unless ``exist_ok``) or InvalidTopic.

        With ``exist_ok``, an existing topic whose partition count or ``cleanup.policy``
        differs from ``spec`` raises TopicMismatch rather than being silently changed.
        """
        ...

    def delete_topic(self, name: str) -> None:
        """Delete a topic and its records. Raises UnknownTopic."""
        ...

    def alter_topic(
        self, name: str, *, partitions: int | None = None, config: Mapping[str, str] | None = None
    ) -> None:
        """Grow a topic to ``partitions`` and set the ``config`` entries given (others stay).

        Raises UnknownTopic, or InvalidTopic for fewer partitions than it has or a bad setting.
        """
        ...

    def describe_topic(self, name: str) -> TopicInfo:
        """Partition count and config of a topic. Raises UnknownTopic."""
        ...

    def list_topics(self) -> list[str]:
        """Names of all topics, sorted."""
        ...

    def offsets(self, topic: str) -> dict[int, PartitionOffsets]:
        """Earliest and latest offset of every partition of ``topic``."""
        ...

    def committed(self, group: str, topic: str | None = None) -> dict[TopicPartition, int]:
        """The offsets ``group`` has committed (next offset to read), for one topic or all."""
        ...

    def group_lag(self, group: str, topic: str) -> dict[TopicPartition, int]:
        """Records not yet consumed by ``group``, per partition of ``topic``.

        A partition without a committed offset counts from its earliest offset.
        """
        ...

    def list_groups(self) -> list[str]:
        """Names of the consumer groups that have members or committed offsets, sorted."""
        ...

    def group_members(self, group: str) -> list[GroupMember]:
        """The live members of ``group`` with their assignments (empty for an unknown group)."""
        ...

    def reset_offsets(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        """Set ``group``'s committed offsets. Raises GroupBusy while it has live members."""
        ...

    def close(self) -> None: ...


class Producer(Protocol):
    """Sends records. ``send`` is thread-safe and non-blocking; the returned future resolves
    once the record is durable (acknowledged), or fails with ProduceError."""

    def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Headers = (),
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> Future[RecordMetadata]:
        """Queue a record. Without ``partition``, a keyed record goes to
        ``murmur2(key) % partitions``; an unkeyed one to any partition.
        Raises UnknownTopic / UnknownPartition at once where it can tell."""
        ...

    def flush(self, timeout: float | None = None) -> int:
        """Wait until every queued record is acknowledged; returns how many are still queued."""
        ...

    def close(self, timeout: float | None = None) -> None:
        """Flush, then release resources."""
        ...


class Consumer(Protocol):
    """A member of a consumer group (or, with ``assign``, a standalone reader).

    Not thread-safe: one thread polls. Rebalance callbacks run inside ``poll``: ``on_revoke``
    before partitions are taken away (commit there), ``on_assign`` after new ones arrive.
    """

    def subscribe(
        self,
        topics: Sequence[str],
        *,
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
    ) -> None:
        """Join the group for ``topics``; partitions are assigned during ``poll``."""
        ...

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        """Read exactly these partitions, outside group management."""
        ...

    def assignment(self) -> set[TopicPartition]:
        """The partitions this member currently owns."""
        ...

    def poll(self, timeout: float = 1.0, max_records: int = 500) -> RecordBatch:
        """Up to ``max_records`` records from owned, unpaused partitions, in offset order per
        partition. Blocks up to ``timeout`` seconds when there is nothing to read (no busy wait).

        The batch is a sequence of ``Record``; its ``rows`` are the same records as plain tuples,
        for callers that read many records and want no object built per record."""
        ...

    def poll_rows(self, timeout: float = 1.0, max_records: int = 500) -> Sequence[Polled]:
        """``poll(...).rows``, except that a row's headers may be pending: ``headers_of(row[5])``
        builds them. For callers that read the headers of few records (the Service's consumer
        loop: its value handlers and mirrors never do), and so should not build them all."""
        ...

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Synchronously commit the next offset to read for each partition.

        Raises CommitFailed for a partition this member no longer owns."""
        ...

    def committed(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int | None]:
        """The group's committed offsets for ``partitions`` (None where there is none)."""
        ...

    def position(self, partition: TopicPartition) -> int:
        """The offset of the next record ``poll`` will return for ``partition``."""
        ...

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Make ``poll`` continue from ``offset`` for an owned partition."""
        ...

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        """Stop returning records for these partitions (back-pressure); membership is kept."""
        ...

    def resume(self, partitions: Iterable[TopicPartition]) -> None: ...

    def close(self) -> None:
        """Leave the group (its partitions are reassigned) without committing."""
        ...


class Broker(Protocol):
    """A connection to one message log; makes admin clients, producers and consumers."""

    def admin(self) -> Admin: ...

    def producer(self, config: Mapping[str, str] | None = None) -> Producer: ...

    def consumer(
        self,
        group_id: str | None,
        *,
        auto_offset_reset: OffsetReset = "earliest",
        config: Mapping[str, str] | None = None,
    ) -> Consumer:
        """A consumer in ``group_id`` (None: standalone, ``assign`` only, no commits).

        ``auto_offset_reset`` applies when the group has no committed offset for a partition
        or the committed one fell off the log."""
        ...

    def close(self) -> None: ...
