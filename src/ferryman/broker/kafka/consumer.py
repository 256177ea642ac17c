"""A consumer group member (or standalone reader) with explicit commits."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial as _partial
from typing import Any, NoReturn, TypeVar

from confluent_kafka import Consumer as _RdConsumer
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import TopicPartition as _RdPartition

from ferryman.broker.base import OffsetReset, RebalanceCallback
from ferryman.broker.kafka._errors import (
    STALE_MEMBER,
    UNAVAILABLE,
    UNKNOWN_TOPIC,
    kafka_error,
    raise_mapped,
    reason,
    while_leader_moves,
)
from ferryman.errors import (
    BrokerError,
    ClientClosed,
    CommitFailed,
    ConfigError,
    UnknownPartition,
)
from ferryman.records import Headers, Polled, RecordBatch, Row, TopicPartition

log = logging.getLogger("ferryman.broker.kafka")

R = TypeVar("R", Row, Polled)


def _headers(raw: list[tuple[str, bytes | None]]) -> Headers:
    """The headers as a tuple; librdkafka gives None for a header without a value, ferryman b"".

    Every record ferryman writes has headers: a generator rebuilding each pair cost a fifth of
    a Service's CPU on Kafka; a loop that only looks for None costs a third of that.
    """
    headers = tuple(raw)
    for _, v in headers:
        if v is None:
            return tuple((k, v or b"") for k, v in headers)
    return headers  # type: ignore[return-value]  # no None in it


def _to_rows(messages: list[Any]) -> list[Row]:
    """The rows of the messages without an error, in order.

    This is the consumer's hot path. One pass, every field of a message read while it is in the
    CPU's cache: reading the messages column by column with map() runs no bytecode per message
    but walks the freshly fetched messages eight times, and measured slower (docs/benchmarks.md).
    A Record is built only when the caller asks the batch for one.
    """
    return [
        (
            m.topic(),
            m.partition(),
            m.offset(),
            m.key(),
            m.value(),
            _headers(h) if (h := m.headers()) else (),
            m.timestamp()[1],
        )
        for m in messages
        if m.error() is None
    ]


def _pending(m: Any) -> Headers:
    """A message's headers, built when asked for (Consumer.poll_rows)."""
    h = m.headers()
    return _headers(h) if h else ()


def _to_polled(messages: list[Any]) -> list[Polled]:
    """``_to_rows``, with each message's headers left pending: librdkafka builds them as Python
    objects only when ``headers()`` is called (about a tenth of a Service's CPU per message)."""
    return [
        (
            m.topic(),
            m.partition(),
            m.offset(),
            m.key(),
            m.value(),
            _partial(_pending, m),
            m.timestamp()[1],
        )
        for m in messages
        if m.error() is None
    ]


CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "partition.assignment.strategy": "cooperative-sticky",
    "enable.partition.eof": False,
    # With nothing new to return, the broker parks a fetch this long, and librdkafka has one
    # fetch in flight per broker: a partition resumed after back-pressure waited behind a parked
    # fetch for up to librdkafka's default 500 ms, which cut a Service on Kafka to 0.3x of a
    # bare loop (docs/benchmarks.md, "Runtime"). 100 ms was librdkafka's own default until 2.x.
    "fetch.wait.max.ms": 100,
}


class KafkaConsumer:
    """A consumer group member (or a standalone reader) with explicit commits."""

    def __init__(
        self,
        config: dict[str, Any],
        group_id: str | None,
        auto_offset_reset: OffsetReset,
        timeout: float,
    ) -> None:
        self._bootstrap = str(config.get("bootstrap.servers"))
        self._group_id = group_id
        self._reset = auto_offset_reset
        self._timeout = timeout
        try:
            self._consumer = _RdConsumer({**config, "error_cb": self._on_error})
        except (KafkaException, ValueError, TypeError) as exc:
            raise ConfigError(
                f"bad Kafka consumer configuration: {reason(exc)}; check the librdkafka properties"
            ) from exc
        self._on_assign: RebalanceCallback | None = None
        self._on_revoke: RebalanceCallback | None = None
        # Where seek() put a partition, until a record from it is returned (librdkafka knows no
        # position between a seek and the next record).
        self._seeked: dict[tuple[str, int], int] = {}
        self._paused: set[TopicPartition] = set()
        self._closed = False

    @staticmethod
    def _on_error(err: KafkaError) -> None:
        log.warning("Kafka consumer: %s", err.str())

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosed("this Kafka consumer was closed; ask the broker for a new one")

    def subscribe(
        self,
        topics: Sequence[str],
        *,
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
    ) -> None:
        self._check_open()
        if self._group_id is None:
            raise ConfigError(
                "a consumer without a group cannot subscribe; give it a group_id or use assign()"
            )
        self._on_assign, self._on_revoke = on_assign, on_revoke
        self._consumer.subscribe(
            list(topics),
            on_assign=self._assigned,
            on_revoke=self._revoked,
            on_lost=self._revoked,
        )

    def _assigned(self, _: object, partitions: list[_RdPartition]) -> None:
        if self._on_assign is not None and partitions and not self._closed:
            self._on_assign({TopicPartition(p.topic, p.partition) for p in partitions})

    def _revoked(self, _: object, partitions: list[_RdPartition]) -> None:
        gone = {TopicPartition(p.topic, p.partition) for p in partitions}
        try:
            # The partitions are still owned here, so the callback can commit their positions.
            if self._on_revoke is not None and gone and not self._closed:
                self._on_revoke(gone)
        finally:
            # librdkafka keeps a partition's pause across a rebalance (librdkafka #1849): a
            # paused partition revoked now would come back paused, with nobody to resume it.
            # A partition assigned to this member starts unpaused, as on the embedded broker.
            paused = [tp for tp in gone if tp in self._paused]
            if paused and not self._closed:
                try:
                    self._consumer.resume([_RdPartition(tp.topic, tp.partition) for tp in paused])
                except KafkaException as exc:
                    log.warning("resuming revoked partitions %s failed: %s", paused, exc)
            for tp in gone:
                self._seeked.pop((tp.topic, tp.partition), None)
                self._paused.discard(tp)

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        self._check_open()
        wanted = set(partitions)
        current = self.assignment()
        if current - wanted:
            self._consumer.incremental_unassign(
                [_RdPartition(tp.topic, tp.partition) for tp in current - wanted]
            )
        if wanted - current:
            self._consumer.incremental_assign([self._start(tp) for tp in wanted - current])

    def _start(self, tp: TopicPartition) -> _RdPartition:
        """Where reading ``tp`` starts after assign().

        A standalone reader has no committed offsets (its group id is its own), so it starts at
        the offset its reset policy names, looked up here: that spares a group coordinator
        request, which can stall while the coordinator moves after a broker failure, and
        librdkafka's resolution of a logical start offset, which takes half a second.
        """
        if self._group_id is not None:
            return _RdPartition(tp.topic, tp.partition)  # the group's committed offset
        lo, hi = self._watermarks(tp)
        return _RdPartition(tp.topic, tp.partition, lo if self._reset == "earliest" else hi)

    def assignment(self) -> set[TopicPartition]:
        self._check_open()
        return {TopicPartition(p.topic, p.partition) for p in self._consumer.assignment()}

    def poll(self, timeout: float = 1.0, max_records: int = 500) -> RecordBatch:
        return RecordBatch(self._poll(timeout, max_records, _to_rows))

    def poll_rows(self, timeout: float = 1.0, max_records: int = 500) -> Sequence[Polled]:
        return self._poll(timeout, max_records, _to_polled)

    def _poll(
        self, timeout: float, max_records: int, to_rows: Callable[[list[Any]], list[R]]
    ) -> list[R]:
        self._check_open()
        # poll() returns at the first record; consume(timeout=0) then drains what is fetched.
        # (consume() with a timeout would wait for max_records or the whole timeout.)
        first = self._consumer.poll(timeout)
        if first is None:
            return []
        messages: list[Any] = [first]  # Any: the stubs make every field Optional
        if max_records > 1:
            messages.extend(self._consumer.consume(max_records - 1, timeout=0))
        rows = to_rows(messages)
        if len(rows) < len(messages):
            for m in messages:
                err = m.error()
                if err is not None:
                    self._message_error(err)
        if self._seeked:
            for row in rows:
                self._seeked.pop((row[0], row[1]), None)
        return rows

    def _message_error(self, err: KafkaError) -> None:
        if err.code() in UNKNOWN_TOPIC:
            # A subscribed topic that does not exist (yet): keep going, as the group does.
            log.warning("Kafka consumer: %s", err.str())
            return
        if err.fatal():
            raise BrokerError(f"the Kafka consumer failed for good: {err.str()}")
        log.warning("Kafka consumer: %s", err.str())

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        self._check_open()
        if not offsets:
            return
        if self._group_id is None:
            raise CommitFailed(
                "a consumer without a group cannot commit; give it a group_id to keep offsets"
            )
        owned = self.assignment()
        lost = sorted(set(offsets) - owned)
        if lost:
            raise CommitFailed(
                f"cannot commit {', '.join(map(str, lost))}: this member no longer owns "
                "them (revoked in a rebalance); their records go to the new owner, drop them"
            )
        request = [_RdPartition(tp.topic, tp.partition, off) for tp, off in offsets.items()]
        try:
            result = self._consumer.commit(offsets=request, asynchronous=False)
        except KafkaException as exc:
            self._commit_failed(exc)
        for tp in result or ():
            if tp.error is not None:
                self._commit_failed(KafkaException(tp.error))

    def _commit_failed(self, exc: KafkaException) -> NoReturn:
        err = kafka_error(exc)
        if err is not None and err.code() in STALE_MEMBER:
            raise CommitFailed(
                f"commit refused: {err.str()}; the group rebalanced and this member's "
                "partitions were reassigned, so drop the uncommitted work"
            ) from exc
        if err is not None and err.code() in UNAVAILABLE:
            raise CommitFailed(
                f"commit failed: no answer from Kafka at {self._bootstrap} ({err.str()}); "
                "the records will be redelivered"
            ) from exc
        raise CommitFailed(f"commit failed: {exc}") from exc

    def committed(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int | None]:
        self._check_open()
        wanted = list(partitions)
        if self._group_id is None or not wanted:
            return dict.fromkeys(wanted)
        try:
            result = self._consumer.committed(
                [_RdPartition(tp.topic, tp.partition) for tp in wanted], timeout=self._timeout
            )
        except KafkaException as exc:
            raise_mapped(exc, "reading committed offsets", bootstrap=self._bootstrap)
        return {
            TopicPartition(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None)
            for tp in result
        }

    def position(self, partition: TopicPartition) -> int:
        self._check_open()
        seeked = self._seeked.get((partition.topic, partition.partition))
        if seeked is not None:
            return seeked
        [tp] = self._consumer.position([_RdPartition(partition.topic, partition.partition)])
        if tp.offset >= 0:
            return int(tp.offset)
        # Nothing read yet: the next record is at the committed offset, or where reset points.
        committed = self.committed([partition])[partition]
        lo, hi = self._watermarks(partition)
        if committed is not None and lo <= committed <= hi:
            return committed
        return lo if self._reset == "earliest" else hi

    def _watermarks(self, partition: TopicPartition) -> tuple[int, int]:
        target = _RdPartition(partition.topic, partition.partition)
        try:
            lo, hi = while_leader_moves(
                lambda: self._consumer.get_watermark_offsets(target, timeout=self._timeout),
                self._timeout,
            )
        except KafkaException as exc:
            raise_mapped(
                exc,
                f"reading the offsets of {partition}",
                bootstrap=self._bootstrap,
                topic=partition.topic,
            )
        return int(lo), int(hi)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self._check_open()
        target = _RdPartition(partition.topic, partition.partition, offset)
        try:
            self._consumer.seek(target)
        except KafkaException as exc:
            err = kafka_error(exc)
            if err is None or err.code() != KafkaError._STATE:
                raise_mapped(exc, f"seeking {partition}", bootstrap=self._bootstrap)
            if partition not in self.assignment():
                raise UnknownPartition(
                    f"cannot seek {partition}: this consumer does not own it"
                ) from exc
            # Fetching has not started for a just-assigned partition: re-add it at the offset.
            self._consumer.incremental_unassign(
                [_RdPartition(partition.topic, partition.partition)]
            )
            self._consumer.incremental_assign([target])
            if partition in self._paused:
                self._consumer.pause([_RdPartition(partition.topic, partition.partition)])
        self._seeked[partition.topic, partition.partition] = offset

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        self._check_open()
        tps = list(partitions)
        self._consumer.pause([_RdPartition(tp.topic, tp.partition) for tp in tps])
        self._paused.update(tps)

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        self._check_open()
        tps = list(partitions)
        self._consumer.resume([_RdPartition(tp.topic, tp.partition) for tp in tps])
        self._paused.difference_update(tps)

    def close(self) -> None:
        if self._closed:
            return
        # Closing leaves the group; the user's callbacks must not run (no commit on close).
        self._closed = True
        self._consumer.close()
