"""The cleaner: retention (``retention.ms``, ``retention.bytes``) and compaction.

Retention drops whole batch rows from the start of a partition, like Kafka drops segments, and
advances the log start offset. Compaction keeps the last record of each key among records
older than ``min.compaction.lag.ms`` (newer ones are neither removed nor count as "later");
a tombstone goes once a cleaning pass that covered it is ``delete.retention.ms`` old, which
``clean_marks`` records. One process cleans at a time (a lease row in ``meta``); compaction
reads without locking and rewrites in short transactions, so producers are not held up.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator

from ferryman.broker.embedded.codec import DamagedBatch, Raw, checksum, join_batch, split_batch
from ferryman.broker.embedded.group import now_ms
from ferryman.broker.embedded.storage import (
    BUSY_TIMEOUT,
    PID_SHIFT,
    Store,
    damaged_batch,
    storage_error,
    write,
)
from ferryman.broker.embedded.topics import Policy
from ferryman.broker.embedded.wakeup import Notifier
from ferryman.errors import BrokerError, StorageError

LEASE_MS = 60_000
_Row = tuple[int, int, bytes | None, bytes, int | None]
_REWRITE_CHUNK = 200
"""Batch rows rewritten per transaction."""


class _Stopped(Exception):
    """The broker is closing: the pass ends at the next partition or chunk."""


class Cleaner:
    """Runs cleaning passes over every topic; safe to call from several threads.

    A pass stops early once ``stop`` is set, so closing the broker does not wait for a pass
    over a large log; what it left is cleaned by the next pass.
    """

    def __init__(
        self,
        store: Store,
        notifier: Notifier,
        clock: Callable[[], int],
        stop: threading.Event | None = None,
    ) -> None:
        self._stop = stop or threading.Event()
        self._store = store
        self._notifier = notifier
        self._clock = clock
        self._lock = threading.Lock()
        self._holder = f"{os.getpid()}-{pid_namespace()}-{uuid.uuid4().hex}"
        self._renewed = 0
        self._conn = store.connect()

    def clean(self, now_ms: int | None = None, *, wait: bool = True) -> bool:
        """One pass over every topic at time ``now_ms`` (default: the clock).

        Returns False when another cleaner was busy and ``wait`` is False.
        """
        if not self._lock.acquire(blocking=wait):
            return False
        try:
            deadline = time.monotonic() + BUSY_TIMEOUT
            while not self._acquire_lease():
                if not wait:
                    return False
                if time.monotonic() > deadline:
                    raise BrokerError(
                        f"another process kept cleaning {str(self._store.path)!r} for "
                        f"{BUSY_TIMEOUT:.0f} s; try again later"
                    )
                time.sleep(0.05)
            try:
                changed = self._pass(self._clock() if now_ms is None else now_ms)
            except _Stopped:
                return False
            except sqlite3.Error as exc:
                raise storage_error(self._store.path, exc) from exc
            finally:
                self._release_lease()
            if changed:
                self._notifier.notify()
            return True
        finally:
            self._lock.release()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _acquire_lease(self) -> bool:
        def body(c: sqlite3.Connection) -> bool:
            now = now_ms()
            row = c.execute("SELECT value FROM meta WHERE key = 'cleaner'").fetchone()
            if row is not None:
                holder, expiry = str(row[0]).split(" ")
                if holder != self._holder and int(expiry) > now and _alive(holder):
                    return False
            c.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('cleaner', ?)",
                (f"{self._holder} {now + LEASE_MS}",),
            )
            self._renewed = now
            return True

        return write(self._conn, self._store.path, body)

    def _renew_lease(self) -> None:
        """Keep the lease through a long pass (renewed when a third of it has gone); stop the
        pass here if the broker is closing."""
        if self._stop.is_set():
            raise _Stopped
        if now_ms() - self._renewed > LEASE_MS // 3 and not self._acquire_lease():
            raise BrokerError("another cleaner took over the lease; this pass stops here")

    def _release_lease(self) -> None:
        def body(c: sqlite3.Connection) -> None:
            c.execute(
                "DELETE FROM meta WHERE key = 'cleaner' AND value LIKE ?", (self._holder + " %",)
            )

        write(self._conn, self._store.path, body)

    def _pass(self, now: int) -> bool:
        conn = self._conn
        changed = False
        damaged: StorageError | None = None
        topics = conn.execute("SELECT name, config FROM topics").fetchall()
        for name, config in topics:
            policy = Policy.of(json.loads(config))
            pids = [
                r[0] for r in conn.execute("SELECT pid FROM partitions WHERE topic = ?", (name,))
            ]
            for pid in pids:
                self._renew_lease()
                if policy.delete:
                    changed |= self._retain(pid, policy, now)
                if policy.compact:
                    try:
                        changed |= self._compact(pid, policy, now)
                    except StorageError as exc:
                        # a damaged batch: the other partitions are still cleaned
                        damaged = damaged or exc
        if damaged is not None:
            raise damaged
        return changed

    def _retain(self, pid: int, policy: Policy, now: int) -> bool:
        if policy.retention_ms < 0 and policy.retention_bytes < 0:
            return False
        lo, hi = pid << PID_SHIFT, (pid + 1) << PID_SHIFT
        cut = now - policy.retention_ms if policy.retention_ms >= 0 else None

        def body(c: sqlite3.Connection) -> bool:
            row = c.execute("SELECT size FROM partitions WHERE pid = ?", (pid,)).fetchone()
            if row is None:
                return False
            excess = row[0] - policy.retention_bytes if policy.retention_bytes >= 0 else -1
            dropped_size = 0
            last_id = new_start = None
            cursor = c.execute(
                "SELECT id, last_offset, max_ts, size FROM batches WHERE id >= ? AND id < ? "
                "ORDER BY id",
                (lo, hi),
            )
            for batch_id, last_offset, max_ts, size in cursor:
                expired = cut is not None and max_ts < cut
                too_big = excess - dropped_size - size >= 0
                if not (expired or too_big):
                    break
                last_id, new_start = batch_id, last_offset + 1
                dropped_size += size
            cursor.close()
            if last_id is None:
                return False
            c.execute("DELETE FROM batches WHERE id >= ? AND id <= ?", (lo, last_id))
            c.execute(
                "UPDATE partitions SET log_start = max(log_start, ?), size = size - ? WHERE pid = ?",
                (new_start, dropped_size, pid),
            )
            return True

        return write(self._conn, self._store.path, body)

    def _compact(self, pid: int, policy: Policy, now: int) -> bool:
        conn = self._conn
        row = conn.execute(
            "SELECT next_offset, clean_upto, tomb_upto FROM partitions WHERE pid = ?", (pid,)
        ).fetchone()
        if row is None:
            return False
        end, clean_upto, tomb_upto = row
        tomb_row = conn.execute(
            "SELECT max(upto) FROM clean_marks WHERE pid = ? AND at_ms <= ?",
            (pid, now - policy.delete_retention_ms),
        ).fetchone()
        tombs_before = int(tomb_row[0] or 0)
        if end == clean_upto and tombs_before == tomb_upto:
            return False  # nothing new to clean since the last pass
        lo = pid << PID_SHIFT
        cut = now - policy.min_compaction_lag_ms

        # pass 1: the last cleanable offset of each key, and the first record too new to clean
        last: dict[bytes, int] = {}
        upto = end
        for row in self._batches(lo, end):
            for r in self._split(pid, row):
                if r.ts > cut:
                    upto = min(upto, r.offset)
                elif r.key is not None:
                    last[r.key] = r.offset

        def keep(r: Raw) -> bool:
            if r.key is None or r.ts > cut:
                return True
            if last.get(r.key) != r.offset:
                return False
            return not (r.tombstone and r.offset < tombs_before)

        # pass 2: rewrite the rows that lose records, a chunk at a time
        changes: list[tuple[int, list[Raw], int]] = []
        changed = False
        for row in self._batches(lo, end):
            base = row[0]
            records = self._split(pid, row)
            kept = [r for r in records if keep(r)]
            if len(kept) != len(records):
                removed = sum(r.size for r in records) - sum(r.size for r in kept)
                changes.append((base, kept, removed))
            if len(changes) >= _REWRITE_CHUNK:
                self._renew_lease()
                self._rewrite(pid, changes)
                changes, changed = [], True
        if changes:
            self._rewrite(pid, changes)
            changed = True

        def finish(c: sqlite3.Connection) -> None:
            c.execute(
                "UPDATE partitions SET clean_upto = ?, tomb_upto = ? WHERE pid = ?",
                (upto, tombs_before, pid),
            )
            c.execute(
                "INSERT INTO clean_marks(pid, upto, at_ms) VALUES (?, ?, ?)", (pid, upto, now)
            )
            # marks older than the one that decides tombstones now are never needed again
            c.execute(
                "DELETE FROM clean_marks WHERE pid = ? AND at_ms < (SELECT max(at_ms) FROM "
                "clean_marks WHERE pid = ? AND at_ms <= ?)",
                (pid, pid, now - policy.delete_retention_ms),
            )

        write(conn, self._store.path, finish)
        return changed

    def _batches(self, lo: int, end: int) -> Iterator[_Row]:
        """(base offset, last offset, deltas, data, crc) of every row below ``end``, read a page
        at a time so neither memory nor an open read transaction grows with the partition."""
        after = lo - 1
        while True:
            rows = self._conn.execute(
                "SELECT id, last_offset, deltas, data, crc FROM batches WHERE id > ? AND id < ? "
                "ORDER BY id LIMIT ?",
                (after, lo | end, _REWRITE_CHUNK),
            ).fetchall()
            if not rows:
                return
            if self._stop.is_set():
                raise _Stopped
            for batch_id, last, deltas, data, crc in rows:
                yield batch_id - lo, last, deltas, data, crc
            after = rows[-1][0]

    def _split(self, pid: int, row: _Row) -> list[Raw]:
        base, last, deltas, data, crc = row
        try:
            return split_batch(base, deltas, data, crc)
        except DamagedBatch as exc:
            found = self._conn.execute(
                "SELECT topic, partition FROM partitions WHERE pid = ?", (pid,)
            ).fetchone()
            topic, partition = found if found is not None else ("?", -1)
            raise damaged_batch(self._store.path, topic, partition, base, last, exc) from exc

    def _rewrite(self, pid: int, changes: list[tuple[int, list[Raw], int]]) -> None:
        lo = pid << PID_SHIFT

        def body(c: sqlite3.Connection) -> None:
            removed_total = 0
            for base, kept, removed in changes:
                if not kept:
                    gone = c.execute("DELETE FROM batches WHERE id = ?", (lo | base,)).rowcount
                else:
                    deltas, data = join_batch(base, kept)
                    gone = c.execute(
                        "UPDATE batches SET last_offset = ?, count = ?, max_ts = ?, size = ?, "
                        "deltas = ?, data = ?, crc = ? WHERE id = ?",
                        (
                            kept[-1].offset,
                            len(kept),
                            max(r.ts for r in kept),
                            sum(r.size for r in kept),
                            deltas,
                            data,
                            checksum(deltas, data),
                            lo | base,
                        ),
                    ).rowcount
                if gone:  # retention or a topic deletion may have removed the row meanwhile
                    removed_total += removed
            c.execute("UPDATE partitions SET size = size - ? WHERE pid = ?", (removed_total, pid))

        write(self._conn, self._store.path, body)


def _alive(holder: str) -> bool:
    """Whether the process holding the lease may still run. Holders share this machine but
    perhaps not its PID namespace (containers sharing the file): a pid from another namespace
    says nothing, and the lease is then left to expire."""
    pid, namespace, _ = [*holder.split("-", 2), "", ""][:3]
    if namespace != str(pid_namespace()):
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (OSError, ValueError):
        return True
    return True


def pid_namespace() -> int:
    """This process's PID namespace (0 where it cannot be told): pids compare only within one."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0
