"""Recovery from damaged batch rows: find them and drop them, so the rest of the log reads."""

from __future__ import annotations

import os
import sqlite3
from typing import NamedTuple

from ferryman.broker.embedded.codec import DamagedBatch, split_batch
from ferryman.broker.embedded.storage import PID_SHIFT, Store, read, write

_PAGE = 200
"""Batch rows read per query, so memory does not grow with the partition."""


class DroppedBatch(NamedTuple):
    """A damaged batch row that was dropped: where it was, and why it was damaged."""

    topic: str
    partition: int
    first_offset: int
    last_offset: int
    reason: str


def drop_damaged_batches(path: str | os.PathLike[str]) -> list[DroppedBatch]:
    """Delete every batch row of the broker file at ``path`` that fails its checksum or does not
    decode, and return what was dropped (its records are lost; the rest reads again).

    Run it while no service uses the file. Offsets of the dropped records stay unused: readers
    step over the gap, as over a compacted log.
    """
    store = Store(path)
    conn = store.connect()
    try:
        found: list[tuple[int, int, int, DroppedBatch]] = []
        partitions = read(conn, store.path, "SELECT pid, topic, partition FROM partitions")
        for pid, topic, partition in partitions:
            lo, hi = pid << PID_SHIFT, (pid + 1) << PID_SHIFT
            after = lo - 1
            while True:
                rows = read(
                    conn,
                    store.path,
                    "SELECT id, last_offset, size, deltas, data, crc FROM batches "
                    "WHERE id > ? AND id < ? ORDER BY id LIMIT ?",
                    (after, hi, _PAGE),
                )
                if not rows:
                    break
                for batch_id, last, size, deltas, data, crc in rows:
                    try:
                        split_batch(batch_id - lo, deltas, data, crc)
                    except DamagedBatch as exc:
                        dropped = DroppedBatch(topic, partition, batch_id - lo, last, str(exc))
                        found.append((pid, batch_id, size, dropped))
                after = rows[-1][0]

        def body(c: sqlite3.Connection) -> None:
            for pid, batch_id, size, _ in found:
                c.execute("DELETE FROM batches WHERE id = ?", (batch_id,))
                c.execute(
                    "UPDATE partitions SET size = max(size - ?, 0) WHERE pid = ?", (size, pid)
                )

        if found:
            write(conn, store.path, body)
    finally:
        conn.close()
    return [dropped for _, _, _, dropped in found]
