"""A queued record, which is also the future of its acknowledgement, and its encoding."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from concurrent.futures._base import FINISHED, PENDING
from typing import Any

from ferryman.broker.embedded.codec import checksum, pack_head
from ferryman.records import RecordMetadata

MAX_ROW_RECORDS = 1000
MAX_ROW_BYTES = 1 << 20
"""Records of one partition are stored in rows of at most this many records / bytes."""


class QueuedRecord(Future[RecordMetadata]):
    """A queued record and the future of its acknowledgement, in one object.

    ``Future()`` builds a Condition (with an RLock) per instance, and ``set_result`` takes it
    and notifies; per record, that alone costs more than the rest of producing, and the
    allocations wake the garbage collector. So the records of one batch share one Condition
    and the writer resolves them all while holding it (a waiter never wakes to find its own
    record still pending); the lists Future keeps are made on first use, and the
    RecordMetadata only when someone asks for the result.
    """

    __slots__ = ("_callback_list", "_h", "_k", "_o", "_p", "_t", "_ts", "_v", "_waiter_list")
    _state = PENDING
    _result: Any = None
    _exception: BaseException | None = None

    def __init__(
        self,
        condition: threading.Condition,
        topic: str,
        partition: int,
        ts: int,
        key: bytes | None,
        value: bytes | None,
        headers: bytes,
    ) -> None:
        self._condition = condition
        self._t = topic
        self._p = partition
        self._ts = ts
        self._k = key
        self._v = value
        self._h = headers
        self._o = -1
        self._waiter_list: list[Any] | None = None
        self._callback_list: list[Any] | None = None

    @property
    def _waiters(self) -> list[Any]:  # type: ignore[override]
        if self._waiter_list is None:
            self._waiter_list = []
        return self._waiter_list

    @property
    def _done_callbacks(self) -> list[Any]:
        if self._callback_list is None:
            self._callback_list = []
        return self._callback_list

    def cancel(self) -> bool:
        """A queued record cannot be taken back (as with Kafka): always False."""
        return False

    def result(self, timeout: float | None = None) -> RecordMetadata:
        value: Any = super().result(timeout)
        if value is None:
            value = self._result = RecordMetadata(self._t, self._p, self._o, self._ts)
        return value  # type: ignore[no-any-return]


def resolve(group: list[QueuedRecord], base: int) -> list[QueuedRecord]:
    """Mark a batch's futures done (caller holds their Condition); returns those with waiters
    or callbacks, which need the slow path."""
    slow: list[QueuedRecord] = []
    offset = base
    for future in group:
        future._k = future._v = None  # written: let the payload go
        if future._state == PENDING:
            future._o = offset
            future._state = FINISHED
            if future._waiter_list or future._callback_list:
                slow.append(future)
        offset += 1
    return slow


def encode_rows(
    group: list[QueuedRecord],
) -> tuple[list[tuple[int, int, int, int, bytes, int]], int]:
    """One partition's queued records as batch rows (first index, count, max timestamp,
    payload size, data, checksum), and the total payload size."""
    rows: list[tuple[int, int, int, int, bytes, int]] = []
    total = 0
    first = 0
    n_all = len(group)
    pack = pack_head
    while first < n_all:
        parts: list[bytes] = []
        append = parts.append
        size = 0
        max_ts = group[first]._ts
        n = 0
        for f in group[first : first + MAX_ROW_RECORDS]:
            ts, key, value, headers = f._ts, f._k, f._v, f._h
            klen = -1 if key is None else len(key)
            vlen = -1 if value is None else len(value)
            append(pack(ts, klen, vlen, len(headers)))
            if key:
                append(key)
                size += klen
            if value:
                append(value)
                size += vlen
            if headers:
                append(headers)
                size += len(headers)
            if ts > max_ts:
                max_ts = ts
            n += 1
            if size >= MAX_ROW_BYTES:
                break
        data = b"".join(parts)
        rows.append((first, n, max_ts, size, data, checksum(None, data)))
        total += size
        first += n
    return rows, total
