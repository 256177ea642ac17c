"""The consumer: a group member (subscribe) or a standalone reader (assign)."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence

from ferryman.broker.base import OffsetReset, RebalanceCallback
from ferryman.broker.embedded.admin import load_topic
from ferryman.broker.embedded.codec import DamagedBatch, decode_batch
from ferryman.broker.embedded.config import whole_number
from ferryman.broker.embedded.group import Membership, strategy_of
from ferryman.broker.embedded.storage import PID_SHIFT, Store, damaged_batch, storage_error, write
from ferryman.broker.embedded.wakeup import Notifier, Waiter
from ferryman.errors import (
    BrokerError,
    ClientClosed,
    CommitFailed,
    ConfigError,
    UnknownPartition,
)
from ferryman.records import Polled, RecordBatch, TopicPartition, settled

_BATCHES_FROM = (
    "SELECT id, last_offset, deltas, data, crc FROM batches WHERE id >= coalesce("
    "(SELECT id FROM batches WHERE id >= ? AND id <= ? ORDER BY id DESC LIMIT 1), ?) "
    "AND id < ? ORDER BY id"
)


class EmbeddedConsumer:
    """Consumer of the embedded broker. One thread at a time uses it (poll, commit, ...).

    Config (Kafka names): ``session.timeout.ms`` (default 10000: a member silent for longer is
    declared dead and its partitions reassigned), ``heartbeat.interval.ms`` (default a third of
    the session timeout, at most 3000), ``max.poll.interval.ms`` (default 300000: a member that
    has not polled for longer leaves the group, as in Kafka, and rejoins when it polls again),
    ``partition.assignment.strategy`` (``range``, ``roundrobin``), ``client.id``.
    """

    def __init__(
        self,
        store: Store,
        notifier: Notifier,
        group_id: str | None,
        auto_offset_reset: OffsetReset = "earliest",
        config: Mapping[str, str] | None = None,
    ) -> None:
        cfg = dict(config or {})
        if auto_offset_reset not in ("earliest", "latest"):
            raise ConfigError(
                f"auto_offset_reset={auto_offset_reset!r}: use 'earliest' or 'latest'"
            )
        if group_id is not None and not group_id:
            raise ConfigError(
                "group_id must be a non-empty string, or None for a standalone reader"
            )
        self._store = store
        self._notifier = notifier
        self._group_id = group_id
        self._reset_to = auto_offset_reset
        self._session_ms = whole_number(cfg, "consumer", "session.timeout.ms", 10_000, 1)
        self._heartbeat_ms = whole_number(
            cfg, "consumer", "heartbeat.interval.ms", max(min(3000, self._session_ms // 3), 1), 1
        )
        self._max_poll_s = whole_number(cfg, "consumer", "max.poll.interval.ms", 300_000, 1) / 1000
        self._last_poll = time.monotonic()
        self._strategy = strategy_of(cfg.get("partition.assignment.strategy"))
        self._member_id = f"{cfg.get('client.id', 'ferryman')}-{uuid.uuid4().hex}"
        self._conn = store.connect()
        self._waiter = Waiter(store.wake_dir)
        self._membership: Membership | None = None
        self._topics: list[str] = []
        self._on_assign: RebalanceCallback | None = None
        self._on_revoke: RebalanceCallback | None = None
        self._seen: tuple[int, int] | None = None
        self._target: set[TopicPartition] = set()
        self._owned: set[TopicPartition] = set()
        self._paused: set[TopicPartition] = set()
        self._positions: dict[TopicPartition, int] = {}
        self._buffers: dict[TopicPartition, list[Polled]] = {}
        # Set by the first poll_rows: from then on records are read with pending headers, and
        # poll() builds them for the rows it returns.
        self._pending = False
        self._rotation = 0
        self._closed = False
        self._fenced = threading.Event()
        self._stop = threading.Event()
        self._heartbeats: threading.Thread | None = None

    # -- membership -------------------------------------------------------------------------

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
                "subscribe needs a consumer group: create the consumer with a group_id, "
                "or read chosen partitions with assign()"
            )
        if isinstance(topics, str) or not topics:
            raise ConfigError("subscribe takes a non-empty list of topic names")
        self._topics = sorted(set(topics))
        self._on_assign, self._on_revoke = on_assign, on_revoke
        if self._membership is None:
            self._drop(set(self._owned))
            self._membership = Membership(
                self._store.path,
                self._group_id,
                self._member_id,
                self._session_ms,
                self._strategy,
            )
        self._last_poll = time.monotonic()
        self._membership.join(self._conn, self._topics)
        self._seen = None
        self._notifier.notify()
        if self._heartbeats is None:
            self._heartbeats = threading.Thread(
                target=self._heartbeat_loop, name="ferryman-embedded-heartbeat", daemon=True
            )
            self._heartbeats.start()

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        self._check_open()
        if self._membership is not None:
            raise ConfigError(
                "this consumer subscribed to a group; use a separate consumer for assign()"
            )
        wanted = set(partitions)
        for tp in wanted:
            count, _ = load_topic(self._conn, self._store, tp.topic)
            if not 0 <= tp.partition < count:
                raise UnknownPartition(
                    f"topic {tp.topic!r} has partitions 0 to {count - 1}, not {tp.partition}"
                )
        self._drop(self._owned - wanted)
        self._owned = wanted

    def assignment(self) -> set[TopicPartition]:
        return set(self._owned)

    def _heartbeat_loop(self) -> None:
        membership = self._membership
        assert membership is not None
        conn = self._store.connect()
        left_after: float | None = None
        try:
            while not self._stop.wait(self._heartbeat_ms / 1000):
                last_poll = self._last_poll
                try:
                    if time.monotonic() - last_poll > self._max_poll_s:
                        # its handler is stuck: heartbeats alone must not keep its partitions
                        # from the others (the next poll rejoins)
                        if left_after != last_poll:
                            membership.leave(conn)
                            left_after = last_poll
                            self._fenced.set()
                            self._notifier.notify()
                        continue
                    alive, changed = membership.heartbeat(conn)
                except Exception:  # a busy or failing file: the next beat tries again
                    continue
                if not alive:
                    self._fenced.set()
                if changed or not alive:
                    self._notifier.notify()
        finally:
            conn.close()

    def _maintain(self) -> None:
        m = self._membership
        if m is None:
            return
        conn = self._conn
        generation, topics_version, alive = m.view(conn)
        if not alive or self._fenced.is_set():
            # declared dead by the others: its partitions are already gone
            self._fenced.clear()
            self._revoke(set(self._owned), release=False)
            m.join(conn, self._topics)
            self._notifier.notify()
            self._seen = None
            generation, topics_version, alive = m.view(conn)
        if (generation, topics_version) != self._seen:
            self._target = m.target(conn)
            self._seen = (generation, topics_version)
            lost = self._owned - self._target
            if lost:
                self._revoke(lost, release=True)
        pending = self._target - self._owned
        if pending:
            got = m.claim(conn, pending, generation)
            if got is None:
                self._seen = None
            elif got:
                self._owned |= got
                if self._on_assign is not None:
                    self._on_assign(set(got))

    def _revoke(self, lost: set[TopicPartition], *, release: bool) -> None:
        try:
            if lost and self._on_revoke is not None:
                self._on_revoke(set(lost))
        finally:
            self._drop(lost)
            self._owned -= lost
            if release and self._membership is not None:
                self._membership.release(self._conn, lost)
                self._notifier.notify()

    def _drop(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self._positions.pop(tp, None)
            self._buffers.pop(tp, None)
            self._paused.discard(tp)

    # -- reading ----------------------------------------------------------------------------

    def poll(self, timeout: float = 1.0, max_records: int = 500) -> RecordBatch:
        rows = self._poll(timeout, max_records)
        if self._pending:
            rows = [settled(r) for r in rows]
        return RecordBatch(rows)  # type: ignore[arg-type]  # read whole, or settled above

    def poll_rows(self, timeout: float = 1.0, max_records: int = 500) -> Sequence[Polled]:
        self._pending = True
        return self._poll(timeout, max_records)

    def _poll(self, timeout: float, max_records: int) -> list[Polled]:
        self._check_open()
        if max_records < 1:
            raise ConfigError(f"max_records={max_records}: ask for at least one record")
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            self._last_poll = time.monotonic()  # waiting inside poll is not being stuck
            self._store.check_file()
            try:
                self._maintain()
                records = self._fetch(max_records)
            except sqlite3.Error as exc:
                raise storage_error(self._store.path, exc) from exc
            if records:
                return records
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            self._waiter.wait(remaining)

    def _bounds(
        self, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, tuple[int, int, int]]:
        """(pid, log start, next offset) of each partition that still exists."""
        topics = sorted({tp.topic for tp in partitions})
        marks = ",".join("?" * len(topics))
        rows = self._conn.execute(
            "SELECT topic, partition, pid, log_start, next_offset FROM partitions "
            f"WHERE topic IN ({marks})",
            topics,
        ).fetchall()
        return {TopicPartition(t, p): (pid, s, n) for t, p, pid, s, n in rows}

    def _fetch(self, max_records: int) -> list[Polled]:
        readable = [tp for tp in self._owned if tp not in self._paused]
        if not readable:
            return []
        readable.sort()
        self._rotation = (self._rotation + 1) % len(readable)
        readable = readable[self._rotation :] + readable[: self._rotation]
        bounds = self._bounds(readable)
        out: list[Polled] = []
        for tp in readable:
            room = max_records - len(out)
            if room <= 0:
                break
            if tp not in bounds:
                continue  # its topic was deleted
            pid, start, end = bounds[tp]
            position = self._positions.get(tp)
            if position is None or position < start or position > end:
                position = self._reset(tp, start, end, initial=position is None)
            buffer = self._buffers.get(tp)
            if not buffer:
                if position >= end:
                    continue
                buffer = self._read(tp, pid, position, end, room)
                if not buffer:
                    # compaction removed everything up to the end: step over the gap, as
                    # Kafka does, so the position reaches the end of the log
                    self._positions[tp] = end
                    continue
            taken = buffer[:room]
            self._buffers[tp] = buffer[room:]
            out.extend(taken)
            self._positions[tp] = taken[-1][2] + 1  # the last row's offset
        return out

    def _read(
        self, tp: TopicPartition, pid: int, position: int, end: int, want: int
    ) -> list[Polled]:
        lo = pid << PID_SHIFT
        records: list[Polled] = []
        cursor = self._conn.execute(_BATCHES_FROM, (lo, lo | position, lo, lo | end))
        try:
            for batch_id, last, deltas, data, crc in cursor:
                try:
                    records += decode_batch(
                        tp.topic,
                        tp.partition,
                        batch_id - lo,
                        deltas,
                        data,
                        position,
                        crc,
                        pending=self._pending,
                    )
                except DamagedBatch as exc:
                    raise damaged_batch(
                        self._store.path, tp.topic, tp.partition, batch_id - lo, last, exc
                    ) from exc
                if len(records) >= want:
                    break
        finally:
            cursor.close()
        return records

    def _reset(self, tp: TopicPartition, start: int, end: int, *, initial: bool) -> int:
        """Where to read from when there is no position or it fell outside the log."""
        self._buffers.pop(tp, None)
        position: int | None = None
        if initial and self._group_id is not None:
            position = self._committed_one(tp)
        if position is None or not start <= position <= end:
            position = start if self._reset_to == "earliest" else end
        self._positions[tp] = position
        return position

    def _committed_one(self, tp: TopicPartition) -> int | None:
        row = self._conn.execute(
            "SELECT offset FROM offsets WHERE group_id = ? AND topic = ? AND partition = ?",
            (self._group_id, tp.topic, tp.partition),
        ).fetchone()
        return None if row is None else int(row[0])

    # -- offsets ----------------------------------------------------------------------------

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        self._check_open()
        group_id = self._group_id
        if group_id is None:
            raise CommitFailed(
                "a consumer without a group cannot commit; create it with a group_id"
            )
        for tp, offset in offsets.items():
            if not isinstance(offset, int) or offset < 0:
                raise CommitFailed(f"cannot commit offset {offset!r} for {tp}: use an offset >= 0")
        membership = self._membership
        rows = [(group_id, tp.topic, tp.partition, o) for tp, o in offsets.items()]

        def body(conn: sqlite3.Connection) -> None:
            if membership is not None:
                membership.check_owner(conn, offsets)
            conn.executemany(
                "INSERT INTO offsets(group_id, topic, partition, offset) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(group_id, topic, partition) DO UPDATE SET offset = excluded.offset",
                rows,
            )

        self._store.check_file()
        # patient: the offsets stay in memory and are committed once the lock is free
        write(self._conn, self._store.path, body, patient=True)

    def committed(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int | None]:
        self._check_open()
        try:
            if self._group_id is None:
                return dict.fromkeys(partitions)
            return {tp: self._committed_one(tp) for tp in partitions}
        except sqlite3.Error as exc:
            raise storage_error(self._store.path, exc) from exc

    def position(self, partition: TopicPartition) -> int:
        self._check_owned(partition)
        position = self._positions.get(partition)
        if position is not None:
            return position
        try:
            bounds = self._bounds([partition])
        except sqlite3.Error as exc:
            raise storage_error(self._store.path, exc) from exc
        if partition not in bounds:
            raise UnknownPartition(f"{partition} no longer exists (its topic was deleted)")
        _, start, end = bounds[partition]
        return self._reset(partition, start, end, initial=True)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self._check_owned(partition)
        if offset < 0:
            raise ConfigError(f"cannot seek {partition} to {offset}: use an offset >= 0")
        self._positions[partition] = offset
        self._buffers.pop(partition, None)

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        self._paused.update(tp for tp in partitions if tp in self._owned)

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        self._paused.difference_update(partitions)

    def _check_owned(self, partition: TopicPartition) -> None:
        self._check_open()
        if partition not in self._owned:
            raise BrokerError(
                f"{partition} is not assigned to this consumer; call this for a partition "
                "from assignment() (after on_assign, or after assign())"
            )

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def member_id(self) -> str:
        """This member's id in its group, as the broker file's ``members`` table names it (for
        logs, and a test hook to act on this member's row)."""
        return self._member_id

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosed("this consumer is closed; ask the broker for a new one")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._heartbeats is not None:
            self._heartbeats.join()
        try:
            if self._membership is not None:
                self._membership.leave(self._conn)
                self._notifier.notify()
        finally:
            self._waiter.close()
            self._conn.close()
