"""The producer: ``send`` queues, a writer thread commits many records per transaction."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures._base import FINISHED, PENDING
from typing import Any

from ferryman.broker.embedded.admin import load_topic
from ferryman.broker.embedded.codec import encode_headers
from ferryman.broker.embedded.config import whole_number
from ferryman.broker.embedded.queued import QueuedRecord, encode_rows, resolve
from ferryman.broker.embedded.storage import PID_SHIFT, Store, write
from ferryman.broker.embedded.topics import BATCH_OVERHEAD, RECORD_OVERHEAD, max_message_bytes
from ferryman.broker.embedded.wakeup import Notifier
from ferryman.broker.partitioner import partition_for
from ferryman.errors import BrokerError, ClientClosed, ProduceError, UnknownPartition
from ferryman.records import Headers, RecordMetadata

_KEY_CACHE = 100_000
"""Keys whose partition the producer remembers."""

_MAX_TIMESTAMP = 1 << 63
_OVERHEAD = BATCH_OVERHEAD + RECORD_OVERHEAD


def _as_bytes(what: str, data: object) -> bytes:
    """Bytes-like data as bytes; anything else is refused in the caller's thread, where the
    mistake is, rather than failing the writer's whole batch."""
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise TypeError(
        f"a record {what} must be bytes or None, not {type(data).__name__}; "
        "encode it first (ferryman's topic codecs do this for you)"
    )


class EmbeddedProducer:
    """Producer of the embedded broker; ``send`` is thread-safe and does not block on I/O.

    Config (Kafka names): ``linger.ms`` (default 0: records that arrive while a batch is being
    written form the next batch) and ``queue.buffering.max.messages`` (default 50000; ``send``
    waits for room beyond it). A record over its topic's ``max.message.bytes`` is refused.
    """

    def __init__(
        self,
        store: Store,
        notifier: Notifier,
        clock: Callable[[], int],
        config: Mapping[str, str] | None = None,
        on_commit: Callable[[int], None] | None = None,
    ) -> None:
        cfg = dict(config or {})
        self._on_commit = on_commit
        self._linger = whole_number(cfg, "producer", "linger.ms", 0, 0) / 1000
        self._max_queued = whole_number(cfg, "producer", "queue.buffering.max.messages", 50_000, 1)
        self._store = store
        self._notifier = notifier
        self._clock = clock
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._pending: list[QueuedRecord] = []
        self._epoch = threading.Condition()
        self._epoch_no = 0
        self._inflight = 0
        self._closed = False
        self._broken: BaseException | None = None
        self._partitions: dict[str, int] = {}
        self._max_bytes: dict[str, int] = {}
        self._sticky: dict[str, tuple[int, int]] = {}
        self._by_key: dict[tuple[bytes, int], int] = {}
        self._lookup_lock = threading.Lock()
        self._lookup_conn = store.connect()
        self._wake = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="ferryman-embedded-producer", daemon=True
        )
        self._thread.start()

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
        if self._closed:
            raise self._closed_error()
        count = self._partitions.get(topic)
        if count is None:
            count = self._lookup(topic)
        if partition is None:
            if key is not None:
                partition = self._by_key.get((key, count), -1)
                if partition < 0:
                    partition = self._partition_for(key, count)
            else:
                sticky = self._sticky.get(topic)
                if sticky is not None and sticky[0] == self._epoch_no:
                    partition = sticky[1]
                else:
                    partition = self._next_sticky(topic, count)
        elif not 0 <= partition < count:
            raise UnknownPartition(
                f"topic {topic!r} has partitions 0 to {count - 1}, not {partition}; "
                "send to one of those, or leave partition out"
            )
        if type(value) is not bytes and value is not None:
            value = _as_bytes("value", value)
        if type(key) is not bytes and key is not None:
            key = _as_bytes("key", key)
        if timestamp is None:
            ts = self._clock()
        elif type(timestamp) is int:
            if not 0 <= timestamp < _MAX_TIMESTAMP:
                raise ValueError(
                    f"timestamp {timestamp} is outside 0 to 2**63-1 milliseconds since the "
                    "epoch; pass a time in that range, or none for now"
                )
            ts = timestamp
        else:
            raise TypeError(
                f"timestamp must be whole milliseconds since the epoch (an int), not {timestamp!r}"
            )
        encoded_headers = encode_headers(headers) if headers else b""
        size = _OVERHEAD + len(encoded_headers)
        if key is not None:
            size += len(key)
        if value is not None:
            size += len(value)
        if size > self._max_bytes[topic]:
            raise self._too_large(topic, size)
        if len(self._pending) >= self._max_queued:
            self._wait_for_room()
        with self._lock:
            if self._closed:  # checked again under the lock the writer's last look takes
                raise self._closed_error()
            future = QueuedRecord(self._epoch, topic, partition, ts, key, value, encoded_headers)
            self._pending.append(future)
        if not self._wake.is_set():
            self._wake.set()
        return future

    @property
    def closed(self) -> bool:
        return self._closed

    def _closed_error(self) -> ClientClosed:
        if self._broken is not None:
            return ClientClosed(
                f"this producer stopped after its writer failed ({self._broken}); "
                "ask the broker for a new one and resend what was not acknowledged"
            )
        return ClientClosed("this producer is closed; ask the broker for a new one")

    def _too_large(self, topic: str, size: int) -> ProduceError:
        # the same error the Kafka backend raises for a record the broker refuses as too large
        return ProduceError(
            f"cannot send a record to topic {topic!r}: it is {size} bytes with its batch "
            f"overhead, over the topic's max.message.bytes={self._max_bytes[topic]}; send "
            "smaller records (split the value, or store it elsewhere and send a reference), "
            "or raise max.message.bytes in the topic's config"
        )

    def _partition_for(self, key: bytes, count: int) -> int:
        # murmur2 in Python costs microseconds; keys of entity topics repeat, so remember them
        if len(self._by_key) >= _KEY_CACHE:
            self._by_key.clear()
        partition = self._by_key[(key, count)] = partition_for(key, count)
        return partition

    def _wait_for_room(self) -> None:
        with self._cv:
            while len(self._pending) >= self._max_queued and not self._closed:
                self._cv.wait()

    def _lookup(self, topic: str) -> int:
        with self._lookup_lock:
            count, config = load_topic(self._lookup_conn, self._store, topic)
        self._max_bytes[topic] = max_message_bytes(config)
        self._partitions[topic] = count
        return count

    def _next_sticky(self, topic: str, count: int) -> int:
        # Kafka's sticky partitioner: one partition per batch, the next one for the next batch
        _, current = self._sticky.get(topic, (-1, -1))
        current = (current + 1) % count
        self._sticky[topic] = (self._epoch_no, current)
        return current

    def _not_from_writer(self, what: str) -> None:
        if threading.current_thread() is self._thread:
            raise BrokerError(
                f"producer.{what}() was called from an acknowledgement callback, which runs "
                "in the producer's writer thread and would wait for itself forever; call it "
                "from another thread"
            )

    def flush(self, timeout: float | None = None) -> int:
        self._not_from_writer("flush")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while self._pending or self._inflight:
                if not self._thread.is_alive():
                    break
                if deadline is None:
                    self._cv.wait()
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cv.wait(remaining)
            return len(self._pending) + self._inflight

    def close(self, timeout: float | None = None) -> None:
        self._not_from_writer("close")
        if self._closed:
            return
        self.flush(timeout)
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._wake.set()
        self._thread.join(timeout)
        with self._lookup_lock:
            self._lookup_conn.close()

    def _run(self) -> None:
        conn = self._store.connect()
        try:
            while True:
                self._wake.wait()
                if self._linger and not self._closed:
                    time.sleep(self._linger)
                with self._cv:
                    if not self._closed:
                        self._wake.clear()
                    items, epoch = self._pending, self._epoch
                    if not items:
                        if self._closed:
                            return
                        continue
                    self._pending = []
                    self._epoch = threading.Condition()
                    self._epoch_no += 1
                    self._inflight = len(items)
                    self._cv.notify_all()
                try:
                    self._write(conn, items, epoch)
                except BaseException as exc:
                    # whatever failed, no sender may be left waiting on a record that is
                    # neither written nor refused
                    _fail(items, epoch, exc)
                    self._fail_queued_behind(items, exc)
                    if not isinstance(exc, Exception):
                        raise
                finally:
                    with self._cv:
                        self._inflight = 0
                        self._cv.notify_all()
        except BaseException as exc:
            with self._cv:
                self._broken, self._closed = exc, True
                items, epoch, self._pending = self._pending, self._epoch, []
                self._cv.notify_all()
            _fail(items, epoch, exc)
            raise
        finally:
            conn.close()

    def _fail_queued_behind(self, failed: list[QueuedRecord], exc: BaseException) -> None:
        """Refuse the records already queued for the partitions of a failed write.

        As Kafka's idempotent producer keeps order: if they were written, a later, smaller
        batch could succeed where the failed one did not (a full disk), and acknowledged
        records would follow a hole in what the sender sent.
        """
        partitions = {(item._t, item._p) for item in failed}
        with self._cv:
            behind = [item for item in self._pending if (item._t, item._p) in partitions]
            if not behind:
                return
            self._pending = [item for item in self._pending if (item._t, item._p) not in partitions]
            epoch = self._epoch
            self._cv.notify_all()
        _fail(behind, epoch, exc, "an earlier record to the same partition was not written")

    def _write(self, conn: Any, items: list[QueuedRecord], epoch: threading.Condition) -> None:
        self._store.check_file()
        by_partition: dict[tuple[str, int], list[QueuedRecord]] = {}
        for item in items:
            group = by_partition.get((item._t, item._p))
            if group is None:
                by_partition[(item._t, item._p)] = [item]
            else:
                group.append(item)
        plan = [(tp, group, *encode_rows(group)) for tp, group in by_partition.items()]

        def body(c: Any) -> list[int | None]:
            bases: list[int | None] = []
            for (topic, partition), group, rows, size in plan:
                found = c.execute(
                    "UPDATE partitions SET next_offset = next_offset + ?, size = size + ? "
                    "WHERE topic = ? AND partition = ? RETURNING pid, next_offset",
                    (len(group), size, topic, partition),
                ).fetchall()
                if not found:
                    bases.append(None)
                    continue
                pid, next_offset = found[0]
                base = next_offset - len(group)
                bases.append(base)
                key = pid << PID_SHIFT
                c.executemany(
                    "INSERT INTO batches(id, last_offset, count, max_ts, size, data, crc) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (key | (base + first), base + first + n - 1, n, max_ts, sz, data, crc)
                        for first, n, max_ts, sz, data, crc in rows
                    ],
                )
            return bases

        bases = write(conn, self._store.path, body, patient=True)
        slow: list[QueuedRecord] = []
        with epoch:
            for ((topic, partition), group, _, _), base in zip(plan, bases, strict=True):
                if base is None:
                    self._partitions.pop(topic, None)
                    error = ProduceError(
                        f"topic {topic!r} partition {partition} no longer exists (the topic was "
                        "deleted while records were queued); create it again and resend"
                    )
                    for item in group:
                        if item._state == PENDING:
                            item._exception = error
                            item._state = FINISHED
                            slow.append(item)
                    continue
                slow += resolve(group, base)
            epoch.notify_all()
            for future in slow:
                for waiter in future._waiters:
                    if future._exception is None:
                        waiter.add_result(future)
                    else:
                        waiter.add_exception(future)
        for future in slow:
            future._invoke_callbacks()  # type: ignore[attr-defined]
        self._notifier.notify()
        if self._on_commit is not None:
            self._on_commit(sum(size for _, _, _, size in plan))


def _fail(
    items: list[QueuedRecord],
    epoch: threading.Condition,
    exc: BaseException,
    why: str = "",
) -> None:
    """Refuse every record of ``items`` not yet acknowledged."""
    error = ProduceError(
        f"records were not written to the embedded broker{f' ({why})' if why else ''}: {exc}; "
        "resend them, in order, once that is fixed"
    )
    with epoch:
        for item in items:
            if item._state == PENDING:
                item.set_exception(error)
