"""An idempotent producer whose delivery reports resolve futures, served by a poller thread."""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures._base import FINISHED, PENDING
from typing import TYPE_CHECKING, Any, NoReturn

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import Producer as _RdProducer

from ferryman.broker.kafka._errors import UNKNOWN_TOPIC, kafka_error, raise_mapped, reason
from ferryman.errors import (
    ClientClosed,
    ConfigError,
    ProduceError,
    UnknownPartition,
    UnknownTopic,
)
from ferryman.records import Headers, RecordMetadata

log = logging.getLogger("ferryman.broker.kafka")

PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "partitioner": "murmur2_random",
    "compression.type": "lz4",
    "linger.ms": 5,
}

# A named tuple's own __new__ is a Python function; tuple.__new__ builds one directly.
_as_metadata = tuple.__new__

_ACKS_LOCK = threading.RLock()
_ACKS = threading.Condition(_ACKS_LOCK)


class _Ack(Future[RecordMetadata]):
    """The future acknowledgement of one produced record.

    A plain Future costs more than producing a record: it builds a Condition and two lists. An
    acknowledgement shares one Condition with all others, starts from class-level defaults and
    makes its lists only when something waits on it; waiting loops until this future is done,
    since any completion wakes every waiter.
    """

    _condition = _ACKS
    _state = PENDING
    _result = None
    _exception = None
    if not TYPE_CHECKING:  # Future's __init__ would build what the defaults above share
        __init__ = object.__init__

    _waiting: list[Any] | tuple[()] = ()  # made a list only when something waits
    _unretrieved: str | None = None
    _callbacks: list[Callable[[Future[RecordMetadata]], object]] | tuple[()] = ()

    @property
    def _waiters(self) -> list[Any]:  # type: ignore[override]  # for wait() and as_completed()
        if not isinstance(self._waiting, list):
            self._waiting = []
        return self._waiting

    @property
    def _done_callbacks(self) -> list[Callable[[Future[RecordMetadata]], object]]:
        if not isinstance(self._callbacks, list):
            self._callbacks = []
        return self._callbacks

    def cancel(self) -> bool:
        return False  # a queued record cannot be taken back

    def done(self) -> bool:
        return self._state == FINISHED  # never cancelled: no lock needed to read one attribute

    def unretrieved(self, what: str) -> None:
        """Nobody will ask for this result: log the failure, if it fails, naming ``what``
        (instead of a done callback per record that nobody awaits)."""
        self._unretrieved = what

    def result(self, timeout: float | None = None) -> RecordMetadata:
        if self._state == FINISHED and self._exception is None:
            # acknowledged (the result is set before the state): no lock, as done()
            return self._result  # type: ignore[return-value]
        self._wait(timeout)
        return super().result(0)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._wait(timeout)
        return super().exception(0)

    def _wait(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with _ACKS:
            while self._state != FINISHED:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return
                _ACKS.wait(remaining)

    def deliver(self, err: KafkaError | None, msg: Any) -> None:
        """librdkafka's delivery report for this record (Future.set_result, made short)."""
        if err is not None:
            exc = ProduceError(
                f"a record for topic {msg.topic()!r} was not acknowledged: {err.str()}; "
                "it may be sent again"
            )
            self.set_exception(exc)
            if self._unretrieved is not None:
                # the logger of ferryman's Delivery, whose failure this is
                logging.getLogger("ferryman.delivery").error(
                    "%s failed and nobody awaited it: %r", self._unretrieved, exc, exc_info=exc
                )
            return
        if self._unretrieved is not None:
            return  # its Delivery is gone: nothing can read the result (or wait for it)
        meta = _as_metadata(
            RecordMetadata, (msg.topic(), msg.partition(), msg.offset(), msg.timestamp()[1])
        )
        with _ACKS_LOCK:
            self._result = meta
            self._state = FINISHED
            for waiter in self._waiting:
                waiter.add_result(self)
            if _ACKS._waiters:  # type: ignore[attr-defined]  # threads blocked in result()
                _ACKS.notify_all()
        if self._callbacks:
            self._invoke_callbacks()  # type: ignore[attr-defined]

    # librdkafka calls the future itself: no bound method to build per record
    __call__ = deliver


class _Health:
    """librdkafka's error callback: logs errors and keeps the fatal one (no reference back to
    the producer, so that an unclosed producer can be collected)."""

    __slots__ = ("fatal",)

    def __init__(self) -> None:
        self.fatal: KafkaError | None = None

    def __call__(self, err: KafkaError) -> None:
        if err.fatal():
            self.fatal = err
            log.error("Kafka producer failed for good: %s", err.str())
        else:
            log.warning("Kafka producer: %s", err.str())


def _serve_reports(producer: _RdProducer, stop: threading.Event) -> None:
    """Run delivery callbacks (resolving futures) until ``stop`` is set."""
    while not stop.is_set():
        producer.poll(0.1)


class KafkaProducer:
    """An idempotent producer; a poller thread turns delivery reports into resolved futures."""

    def __init__(self, config: dict[str, Any], timeout: float) -> None:
        self._bootstrap = str(config.get("bootstrap.servers"))
        self._timeout = timeout
        self._health = _Health()
        config = {**config, "error_cb": self._health}
        try:
            self._producer = _RdProducer(config)
        except (KafkaException, ValueError, TypeError) as exc:
            raise ConfigError(
                f"bad Kafka producer configuration: {reason(exc)}; check the librdkafka properties"
            ) from exc
        self._partitions: dict[str, int] = {}
        self._closed = False
        # The poller holds no reference to this object, so a producer dropped without close()
        # is collected and its poller stops (its unsent records are then lost).
        self._stop = threading.Event()
        self._poller = threading.Thread(
            target=_serve_reports,
            args=(self._producer, self._stop),
            name="ferryman-kafka-producer",
            daemon=True,
        )
        self._poller.start()
        weakref.finalize(self, self._stop.set)

    def _check_destination(self, topic: str, partition: int | None) -> None:
        """Raise UnknownTopic / UnknownPartition at once, from metadata cached per topic."""
        count = self._partitions.get(topic)
        if count is None or (partition is not None and not 0 <= partition < count):
            try:
                md = self._producer.list_topics(topic=topic, timeout=self._timeout)
            except KafkaException as exc:
                raise_mapped(
                    exc, f"sending to topic {topic!r}", bootstrap=self._bootstrap, topic=topic
                )
            meta = md.topics.get(topic)
            if meta is None or meta.error is not None:
                raise UnknownTopic(
                    f"cannot send to topic {topic!r}: it does not exist on {self._bootstrap}; "
                    "create it first"
                )
            count = self._partitions[topic] = len(meta.partitions)
        if partition is not None and not 0 <= partition < count:
            raise UnknownPartition(
                f"topic {topic!r} has partitions 0..{count - 1}; there is no {partition}"
            )

    def _unusable(self) -> NoReturn:
        if self._closed:
            raise ClientClosed("this Kafka producer was closed; ask the broker for a new one")
        assert self._health.fatal is not None
        raise ProduceError(
            f"the Kafka producer failed for good ({self._health.fatal.str()}); open a new producer"
        )

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
        # The common case (known topic, no partition, timestamp or headers) is kept short: this
        # runs once per record.
        if self._closed or self._health.fatal is not None:
            self._unusable()
        if partition is None:
            if topic not in self._partitions:
                self._check_destination(topic, None)
            partition = -1
        else:
            self._check_destination(topic, partition)
        future = _Ack()
        try:
            if headers:  # a service's sends: message id and source on every record
                self._producer.produce(
                    topic,
                    value,
                    key,
                    partition,
                    future,
                    timestamp=timestamp or 0,
                    headers=list(headers),
                )
            elif timestamp is None:
                self._producer.produce(topic, value, key, partition, future)
            else:
                self._produce(topic, value, key, partition, future, timestamp, headers)
            return future
        except BufferError:
            pass
        except KafkaException as exc:
            self._refused(exc, topic)
        # The local queue is full: wait for acknowledgements (back-pressure), within a bound.
        deadline = time.monotonic() + self._timeout
        while True:
            self._producer.poll(0.05)
            try:
                self._produce(topic, value, key, partition, future, timestamp, headers)
                return future
            except BufferError:
                if time.monotonic() >= deadline:
                    raise ProduceError(
                        f"the producer's queue stayed full for {self._timeout:g}s; the brokers "
                        f"at {self._bootstrap} do not keep up or do not answer"
                    ) from None
            except KafkaException as exc:
                self._refused(exc, topic)

    def _produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        partition: int,
        future: _Ack,
        timestamp: int | None,
        headers: Headers,
    ) -> None:
        self._producer.produce(
            topic,
            value,
            key,
            partition,
            on_delivery=future,
            timestamp=timestamp or 0,
            headers=list(headers) if headers else None,
        )

    def _refused(self, exc: KafkaException, topic: str) -> NoReturn:
        err = kafka_error(exc)
        if err is not None and err.code() in UNKNOWN_TOPIC:
            raise_mapped(exc, "sending", bootstrap=self._bootstrap, topic=topic)
        raise ProduceError(
            f"cannot send a record to topic {topic!r}: {reason(exc)}; check the record "
            "(size, fields) against the producer's settings"
        ) from exc

    def flush(self, timeout: float | None = None) -> int:
        if self._closed:
            return 0
        return int(self._producer.flush(-1 if timeout is None else timeout))

    def close(self, timeout: float | None = None) -> None:
        if self._closed:
            return
        if self.flush(timeout):
            # Records still queued at the deadline fail their futures instead of hanging them.
            self._producer.purge()
            self._producer.flush(0)
        self._closed = True
        self._stop.set()
        self._poller.join()
