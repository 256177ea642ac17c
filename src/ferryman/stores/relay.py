"""The outbox relay: publishes committed outbox rows through a Producer, then deletes them.

Per partition it reads the oldest remaining rows in id order, sends them, and deletes the ones
the broker acknowledged, so a row that committed late with a lower id is still the oldest row
left and goes next: nothing hangs on an id watermark. Several relays split the partitions by
lease (leases.py). Synchronous: run ``run(stop)`` in a thread. docs/outbox.md has the guarantees.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Protocol

from sqlalchemy import Connection, delete, select

from ferryman.errors import ConfigError
from ferryman.records import Headers, RecordMetadata, TopicPartition
from ferryman.stores.database import Database
from ferryman.stores.leases import Leases
from ferryman.stores.outbox import NOTIFY_CHANNEL, decode_headers, outbox_table, wakeup_event

log = logging.getLogger(__name__)

SQLITE_POLL_INTERVAL = 0.05
"""Seconds between looks at an SQLite outbox when no in-process writer woke the relay."""
POSTGRES_POLL_INTERVAL = 1.0
"""Seconds between looks at a PostgreSQL outbox when no NOTIFY arrived (the fallback)."""
_ERROR_BACKOFF = 1.0


class Producer(Protocol):
    """What the relay needs of ``ferryman.broker.base.Producer``: ``send`` with a partition."""

    def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Headers = (),
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> Future[RecordMetadata]: ...


def _now_ms() -> int:
    return int(time.time() * 1000)


class Relay:
    """Publishes the committed rows of ``ferryman_outbox`` through ``producer``.

    ``partitions`` limits it to some outbox partitions (None: all); ``batch`` rows are sent per
    partition and round; a lease lasts ``lease_seconds`` unless renewed; ``poll_interval`` is
    the fallback between looks when no wake-up came (SQLite 0.05 s, PostgreSQL 1 s).
    """

    def __init__(
        self,
        database: Database,
        producer: Producer,
        *,
        partitions: Iterable[TopicPartition] | None = None,
        batch: int = 500,
        lease_seconds: float = 10.0,
        poll_interval: float | None = None,
        name: str | None = None,
    ) -> None:
        if batch < 1:
            raise ConfigError(f"Relay(batch={batch!r}): send at least 1 row per round")
        if lease_seconds <= 0.2:
            raise ConfigError(
                f"Relay(lease_seconds={lease_seconds!r}): a lease must outlast a batch's "
                "acknowledgements; use a few seconds (default 10)"
            )
        if poll_interval is not None and poll_interval <= 0:
            raise ConfigError(f"Relay(poll_interval={poll_interval!r}): use seconds > 0")
        self.database = database
        self.producer = producer
        self.table = outbox_table(database.metadata)
        self.only = None if partitions is None else frozenset(partitions)
        self.batch = batch
        self.lease_ms = int(lease_seconds * 1000)
        postgres = database.dialect == "postgresql"
        default_poll = POSTGRES_POLL_INTERVAL if postgres else SQLITE_POLL_INTERVAL
        self.poll_interval = poll_interval if poll_interval is not None else default_poll
        self.name = name or f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self.leases = Leases(database.metadata, self.name, self.lease_ms)
        self._held: set[TopicPartition] = set()
        self._valid_until: dict[TopicPartition, int] = {}  # ms: the expiry this relay wrote
        self._refresh_at = 0  # ms: when to heartbeat and rebalance the leases again
        self._look = True  # whether to look for partitions with rows before the next round
        self._wakeup = wakeup_event(database)
        self._listener: Any = None  # a psycopg connection LISTENing, on PostgreSQL
        self._closed = False

    def run_once(self) -> int:
        """Publish one batch of each partition this relay leases; return the rows published.

        All batches are sent before any acknowledgement is awaited, and the acknowledged rows of
        every partition are deleted in one transaction."""
        now = _now_ms()
        if self._look or now >= self._refresh_at:
            self._assign(now, renew=now >= self._refresh_at)
        if not self._held:
            return 0
        batches = self._read()
        if not batches:
            self._look = True  # every partition drained: look for new ones next round
            return 0
        margin = self.lease_ms // 5
        deadline = (
            time.monotonic()
            + (min(self._valid_until[tp] for tp in batches) - margin - _now_ms()) / 1000
        )
        sent = {tp: [self._send(tp, row) for row in rows] for tp, rows in batches.items()}
        done = {
            tp: [row[0] for row in batches[tp][: self._acknowledged(tp, futures, deadline)]]
            for tp, futures in sent.items()
        }
        published = self._delete(done)
        self._look = all(len(rows) < self.batch for rows in batches.values())
        return published

    def run(self, stop: threading.Event) -> None:
        """Relay until ``stop`` is set; errors are logged and retried after a back-off."""
        while not stop.is_set():
            self._wakeup.clear()
            try:
                published = self.run_once()
            except Exception:
                log.exception("outbox relay %s failed; retrying in %.1fs", self.name, 1.0)
                stop.wait(_ERROR_BACKOFF)
                continue
            if published == 0:
                self._wait(stop)

    def close(self) -> None:
        """Release this relay's leases (others take its partitions at once) and its listener."""
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self.database.begin() as conn:
            self.leases.release_all(conn)
        self._held = set()

    def _assign(self, now: int, *, renew: bool) -> None:
        """Look for partitions with rows; take or give up leases when there are new ones or
        ``renew`` (heartbeat) is due. Writes nothing when the leases held cover the rows."""
        t = self.table
        with self.database.begin() as conn:
            found = conn.execute(select(t.c.topic, t.c.partition).distinct())
            candidates = {TopicPartition(topic, p) for topic, p in found}
            if self.only is not None:
                candidates &= self.only
            if not candidates and not self._held:
                return  # nothing to do: no heartbeat write, so idle relays leave SQLite alone
            if not renew and candidates <= self._held:
                return
            self._held = self.leases.assign(conn, candidates, now)
        self._valid_until = {tp: now + self.lease_ms for tp in self._held}
        self._refresh_at = now + self.lease_ms // 3

    def _read(self) -> dict[TopicPartition, Sequence[Any]]:
        """The oldest rows of each leased partition, renewing the leases that run short."""
        t = self.table
        batches: dict[TopicPartition, Sequence[Any]] = {}
        with self.database.begin() as conn:
            for tp in sorted(self._held):
                if not self._keep(conn, tp, self.lease_ms // 2):
                    continue
                rows = conn.execute(
                    select(t.c.id, t.c.key, t.c.value, t.c.headers, t.c.timestamp_ms)
                    .where(t.c.topic == tp.topic, t.c.partition == tp.partition)
                    .order_by(t.c.id)
                    .limit(self.batch)
                ).all()
                if rows:
                    batches[tp] = rows
        return batches

    def _send(self, tp: TopicPartition, row: Sequence[Any]) -> Future[RecordMetadata]:
        _id, key, value, headers, timestamp = row
        return self.producer.send(
            tp.topic,
            value,
            key=key,
            headers=decode_headers(headers),
            partition=tp.partition,
            timestamp=timestamp,
        )

    def _delete(self, done: dict[TopicPartition, list[int]]) -> int:
        """Delete the acknowledged rows of partitions this relay still leases; return how many."""
        t = self.table
        deleted = 0
        with self.database.begin() as conn:
            for tp, ids in sorted(done.items()):
                # Another relay may have taken an expired lease: it sends these rows again
                # (at-least-once), and they are its to delete.
                if not ids or not self._keep(conn, tp, self.lease_ms // 5):
                    continue
                for start in range(0, len(ids), 1000):
                    conn.execute(delete(t).where(t.c.id.in_(ids[start : start + 1000])))
                deleted += len(ids)
        return deleted

    def _keep(self, conn: Connection, tp: TopicPartition, at_least_ms: int) -> bool:
        """Whether this relay still leases ``tp`` for ``at_least_ms``, renewing it if not."""
        now = _now_ms()
        if self._valid_until.get(tp, 0) - now >= at_least_ms:
            return True  # no one can take it before then: no need to write
        if self.leases.renew(conn, tp, now):
            self._valid_until[tp] = now + self.lease_ms
            return True
        log.warning("outbox relay %s lost its lease on %s", self.name, tp)
        self._held.discard(tp)
        self._valid_until.pop(tp, None)
        return False

    def _acknowledged(
        self, tp: TopicPartition, futures: list[Future[RecordMetadata]], deadline: float
    ) -> int:
        """How many of ``futures``, from the first, were acknowledged: only that prefix may be
        deleted, so a failed record and every later one are sent again, in order."""
        for i, future in enumerate(futures):
            try:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                log.warning("outbox relay %s: %s not acknowledged within the lease", self.name, tp)
                return i
            except Exception as exc:
                log.warning("outbox relay %s: sending to %s failed: %s", self.name, tp, exc)
                return i
        return len(futures)

    def _wait(self, stop: threading.Event) -> None:
        if self.database.dialect != "postgresql":
            self._wakeup.wait(self.poll_interval)
            return
        try:
            listener = self._listen()
            for _ in listener.notifies(timeout=self.poll_interval, stop_after=1):
                pass
        except Exception as exc:  # the fallback: poll
            log.warning("outbox relay %s: LISTEN failed (%s); polling", self.name, exc)
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            stop.wait(self.poll_interval)

    def _listen(self) -> Any:
        if self._listener is None:
            import psycopg  # PostgreSQL only; the driver is the one Database accepts

            url = self.database.url.set(drivername="postgresql")
            conn = psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)
            conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            self._listener = conn
        return self._listener
