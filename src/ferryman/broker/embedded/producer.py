"""The producer: ``send`` queues, a writer thread commits many records per transaction."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures._base import PENDING
from typing import Any

from ferryman.broker.partitioner import partition_for
from ferryman.errors import ClientClosed, ConfigError, ProduceError, UnknownPartition
from ferryman.records import Headers, RecordMetadata

from .admin import load_topic
from .codec import encode_headers, encode_record, make_metadata
from .storage import PID_SHIFT, Store, write
from .wakeup import Notifier

MAX_ROW_RECORDS = 1000
MAX_ROW_BYTES = 1 << 20
"""Records of one partition are stored in rows of at most this many records / bytes."""

_Item = tuple[str, int, int, "bytes | None", "bytes | None", bytes, "_Ack"]


class _Ack(Future[RecordMetadata]):
    """The future of one record. It shares one Condition with every record of its batch.

    ``Future()`` builds a Condition (with an RLock) per instance, which costs more than the
    rest of ``send``; records of one batch are acknowledged together, under that shared
    Condition held for the whole batch, so a waiter never sees a sibling's notification while
    its own record is still pending.
    """

    def __init__(self, condition: threading.Condition) -> None:
        self._condition = condition
        self._state = PENDING
        self._result = None
        self._exception = None
        self._waiters: list[Any] = []
        self._done_callbacks: list[Any] = []


def _int_config(config: Mapping[str, str], name: str, default: int) -> int:
    raw = config.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"producer config {name}={raw!r} is not a whole number") from None


class EmbeddedProducer:
    """Producer of the embedded broker; ``send`` is thread-safe and does not block on I/O.

    Config (Kafka names): ``linger.ms`` (default 0: records that arrive while a batch is being
    written form the next batch) and ``queue.buffering.max.messages`` (default 100000; ``send``
    waits for room beyond it).
    """

    def __init__(
        self,
        store: Store,
        notifier: Notifier,
        clock: Callable[[], int],
        config: Mapping[str, str] | None = None,
    ) -> None:
        cfg = dict(config or {})
        self._linger = _int_config(cfg, "linger.ms", 0) / 1000
        self._max_queued = max(_int_config(cfg, "queue.buffering.max.messages", 100_000), 1)
        self._store = store
        self._notifier = notifier
        self._clock = clock
        self._cv = threading.Condition(threading.Lock())
        self._pending: list[_Item] = []
        self._epoch = threading.Condition()
        self._epoch_no = 0
        self._inflight = 0
        self._closed = False
        self._partitions: dict[str, int] = {}
        self._sticky: dict[str, tuple[int, int]] = {}
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
            raise ClientClosed("this producer is closed; ask the broker for a new one")
        count = self._partitions.get(topic)
        if count is None:
            count = self._lookup(topic)
        if partition is None:
            if key is not None:
                partition = partition_for(key, count)
            else:
                partition = self._sticky_partition(topic, count)
        elif not 0 <= partition < count:
            raise UnknownPartition(
                f"topic {topic!r} has partitions 0 to {count - 1}, not {partition}; "
                "send to one of those, or leave partition out"
            )
        ts = self._clock() if timestamp is None else timestamp
        encoded_headers = encode_headers(headers) if headers else b""
        with self._cv:
            while len(self._pending) >= self._max_queued and not self._closed:
                self._cv.wait()
            future = _Ack(self._epoch)
            self._pending.append((topic, partition, ts, key, value, encoded_headers, future))
        if not self._wake.is_set():
            self._wake.set()
        return future

    def _lookup(self, topic: str) -> int:
        with self._lookup_lock:
            count, _ = load_topic(self._lookup_conn, self._store, topic)
        self._partitions[topic] = count
        return count

    def _sticky_partition(self, topic: str, count: int) -> int:
        # Kafka's sticky partitioner: one partition per batch, the next one for the next batch
        epoch, current = self._sticky.get(topic, (-1, -1))
        if epoch != self._epoch_no:
            current = (current + 1) % count
            self._sticky[topic] = (self._epoch_no, current)
        return current

    def flush(self, timeout: float | None = None) -> int:
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
                finally:
                    with self._cv:
                        self._inflight = 0
                        self._cv.notify_all()
        finally:
            conn.close()

    def _write(self, conn: Any, items: list[_Item], epoch: threading.Condition) -> None:
        by_partition: dict[tuple[str, int], list[_Item]] = {}
        for item in items:
            group = by_partition.get((item[0], item[1]))
            if group is None:
                by_partition[(item[0], item[1])] = [item]
            else:
                group.append(item)
        plan = [(tp, group, *_encode(group)) for tp, group in by_partition.items()]

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
                    "INSERT INTO batches(id, last_offset, count, max_ts, size, data) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (key | (base + first), base + first + n - 1, n, max_ts, sz, data)
                        for first, n, max_ts, sz, data in rows
                    ],
                )
            return bases

        try:
            bases = write(conn, self._store.path, body)
        except BaseException as exc:
            error = ProduceError(f"records were not written to the embedded broker: {exc}")
            with epoch:
                for item in items:
                    _fail(item[6], error)
            if not isinstance(exc, Exception):
                raise
            return
        with epoch:
            for ((topic, partition), group, _, _), base in zip(plan, bases, strict=True):
                if base is None:
                    self._partitions.pop(topic, None)
                    error = ProduceError(
                        f"topic {topic!r} partition {partition} no longer exists (the topic was "
                        "deleted while records were queued); create it again and resend"
                    )
                    for item in group:
                        _fail(item[6], error)
                    continue
                for i, item in enumerate(group):
                    # try/except costs nothing here, contextlib.suppress would, per record
                    try:  # noqa: SIM105
                        item[6].set_result(make_metadata(topic, partition, base + i, item[2]))
                    except Exception:  # cancelled by its caller: the record is written anyway
                        pass
        self._notifier.notify()


def _fail(future: _Ack, error: Exception) -> None:
    with contextlib.suppress(Exception):  # cancelled by its caller
        future.set_exception(error)


def _encode(group: list[_Item]) -> tuple[list[tuple[int, int, int, int, bytes]], int]:
    """Rows (first index, count, max timestamp, payload size, data) and the total size."""
    rows: list[tuple[int, int, int, int, bytes]] = []
    total = 0
    first = 0
    while first < len(group):
        parts: list[bytes] = []
        size = 0
        max_ts = group[first][2]
        n = 0
        for item in group[first : first + MAX_ROW_RECORDS]:
            size += encode_record(parts, item[2], item[3], item[4], item[5])
            if item[2] > max_ts:
                max_ts = item[2]
            n += 1
            if size >= MAX_ROW_BYTES:
                break
        rows.append((first, n, max_ts, size, b"".join(parts)))
        total += size
        first += n
    return rows, total
