"""The republisher: publishes the changed rows of a joined table at a cadence of its own.

Each pass (``run_once``) leases the marked keys of ``ferryman_dirty`` in batches, oldest first,
builds each key's output value from its row and child rows, hands it to ``send`` (the glue that
encodes and produces to the output entity topic), waits for the acknowledgements, then clears a
key's mark only if its version did not move meanwhile: a write that lands during a pass is
published by a later pass, never lost. A key is published at most once per pass, and ``run``
starts at most one pass per ``every`` seconds, so however fast the sources change, the output
carries at most one record per key per cadence window.

Several republishers may share one database: the lease (taken with ``FOR UPDATE SKIP LOCKED``
on PostgreSQL; SQLite's writer lock serialises the claims) keeps any key with one of them from
claim to acknowledgement, so no key is published by two at once.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Text,
    and_,
    bindparam,
    delete,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql

from ferryman.clock import current as current_clock
from ferryman.errors import ConfigError
from ferryman.stores.database import Database
from ferryman.stores.dirty import in_values, mark_dirty
from ferryman.stores.joins import JoinedTable
from ferryman.stores.tables import Row

Build = Callable[[Row, Mapping[str, list[Row]]], Any]
"""The user's output value of a key from its row and its child rows (by child table); None
publishes a tombstone."""
Send = Callable[[Any, Any], "Future[Any]"]
"""Produce (key, value) to the output topic (value None: a tombstone); resolves on the ack."""

DEFAULT_BATCH = 1000
MAX_BATCH = 10_000
DEFAULT_LEASE = 60.0
"""Seconds a claimed key stays with its republisher; a crashed one's keys come back after it."""


class Republisher:
    """Publishes the keys of ``joined`` that writes marked, through ``build`` and ``send``.

    ``every``: seconds between passes (``run``); ``debounce``: a key waits until its writes
    pause this long; ``incomplete``: a row lacking a required part is skipped until complete
    (``"skip"``) or built anyway with its missing columns as None (``"defaults"``).
    """

    def __init__(
        self,
        database: Database,
        joined: JoinedTable,
        build: Build,
        *,
        every: float,
        debounce: float = 0.0,
        incomplete: Literal["skip", "defaults"] = "skip",
        batch: int = DEFAULT_BATCH,
        lease: float = DEFAULT_LEASE,
    ) -> None:
        if not every > 0:
            raise ConfigError(f"every={every!r}: write the cadence in seconds > 0, e.g. every=1.0")
        if debounce < 0:
            raise ConfigError(f"debounce={debounce!r}: write seconds >= 0 (0: no debounce)")
        if incomplete not in ("skip", "defaults"):
            raise ConfigError(
                f"incomplete={incomplete!r}: write 'skip' (wait until the row is complete) or "
                "'defaults' (build it with the missing columns as None)"
            )
        if not 1 <= batch <= MAX_BATCH or not lease > 0:
            raise ConfigError(
                f"batch={batch!r}, lease={lease!r}: write 1 <= batch <= {MAX_BATCH} (SQLite "
                "binds a batch's keys in one statement) and lease > 0 seconds"
            )
        self.database = database
        self.joined = joined
        self.build = build
        self.every = every
        self.debounce = debounce
        self.incomplete = incomplete
        self.batch = batch
        self.lease = lease
        self.id = uuid.uuid4().hex
        self._dirty = joined.dirty

    def run_once(self, send: Send, *, ack_timeout: float | None = None) -> int:
        """One pass: publish every key marked before the pass began (and quiet for
        ``debounce``), each once, batch by batch. Returns the records sent. A failed send
        leaves its key marked for a later pass and is raised after the others are settled."""
        began = time.time()
        sent = 0
        while True:
            claimed = self._claim(began)
            if not claimed:
                return sent
            sent += self._publish(claimed, send, ack_timeout)
            if len(claimed) < self.batch:
                return sent

    def run(self, send: Send, stop: threading.Event) -> None:
        """Run a pass every ``every`` seconds until ``stop`` is set."""
        while not stop.is_set():
            ticks = current_clock()  # a test's FakeClock paces the passes (ferryman.testing)
            started = ticks.monotonic()
            self.run_once(send)
            ticks.wait(stop, max(0.0, self.every - (ticks.monotonic() - started)))

    def republish_all(self, where: ColumnElement[bool] | None = None) -> int:
        """Mark every row of the joined table (or those matching ``where``) for the next pass:
        the backfill after the output schema gained a field. Returns the keys marked."""
        key = self.joined.key_column
        query = select(key).order_by(key)
        if where is not None:
            query = query.where(where)
        marked = 0
        with self.database.engine.connect() as reader:
            keys = [k for (k,) in reader.execute(query)]
        for start in range(0, len(keys), 10_000):
            chunk = keys[start : start + 10_000]
            with self.database.begin() as conn:
                mark_dirty(conn, self._dirty, self.joined.name, chunk)
            marked += len(chunk)
        return marked

    def pending(self) -> int:
        """How many keys of the joined table wait to be published."""
        d = self._dirty.c
        query = select(func.count()).where(d.joined_table == self.joined.name)
        with self.database.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def _claim(self, began: float) -> list[tuple[str, int]]:
        """Lease up to ``batch`` keys, oldest first, as (key, version): those marked before the
        pass ``began`` (so a key is published once per pass, and a hot key still is) and whose
        writes paused for ``debounce``."""
        d = self._dirty.c
        with self.database.begin() as conn:
            # Read the clock once the transaction holds its locks: a writer that held SQLite's
            # lock meanwhile marked its key later than a clock read before waiting for it.
            now = time.time()
            query = (
                select(d.key, d.version)
                .where(
                    d.joined_table == self.joined.name,
                    d.marked_at <= began,
                    or_(d.leased_until.is_(None), d.leased_until < now),
                )
                .order_by(d.marked_at, d.key)
                .limit(self.batch)
            )
            if self.debounce:
                query = query.where(d.changed_at <= now - self.debounce)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            claimed = [(k, v) for k, v in conn.execute(query)]
            if claimed:
                conn.execute(
                    update(self._dirty)
                    .where(
                        d.joined_table == self.joined.name,
                        in_values(conn, d.key, [k for k, _ in claimed]),
                    )
                    .values(leased_until=now + self.lease, lease_owner=self.id)
                )
        return claimed

    def _publish(
        self, claimed: list[tuple[str, int]], send: Send, ack_timeout: float | None
    ) -> int:
        keys = {json.loads(k): (k, v) for k, v in claimed}
        with self.database.engine.connect() as conn:
            rows = self.joined.read(conn, list(keys))
        settled: list[tuple[str, int]] = []
        waiting: list[tuple[tuple[str, int], Future[Any]]] = []
        failure: Exception | None = None
        for key, joined in rows.items():
            if joined.state == "incomplete" and self.incomplete == "skip":
                settled.append(keys[key])  # a later write to the row marks it again
                continue
            try:
                value = None
                if joined.row is not None and joined.state != "deleted":
                    value = self.build(joined.row, joined.children)
                waiting.append((keys[key], send(key, value)))
            except Exception as exc:  # this key only: the others go out, then it is raised
                failure = failure or exc
        sent = 0
        for mark, future in waiting:
            try:
                future.result(ack_timeout)
            except Exception as exc:
                failure = failure or exc
                continue
            settled.append(mark)
            sent += 1
        self._settle(settled, [k for k, _ in claimed])
        if failure is not None:
            raise failure
        return sent

    def _settle(self, done: list[tuple[str, int]], claimed: list[str]) -> None:
        """Clear the marks of ``done`` keys whose version did not move; release the rest."""
        d = self._dirty
        claimed = sorted(claimed)
        with self.database.begin() as conn:
            mine = and_(d.c.joined_table == self.joined.name, in_values(conn, d.c.key, claimed))
            if conn.dialect.name == "postgresql":
                # Lock the marks in the order writers mark them (sorted key text, byte order),
                # so settling and a writer's marks cannot deadlock.
                conn.execute(
                    select(d.c.key).where(mine).order_by(d.c.key.collate("C")).with_for_update()
                )
                if done:
                    conn.execute(
                        text(
                            f'DELETE FROM "{d.name}" AS d USING unnest(:keys, :versions) AS v(k, n) '
                            "WHERE d.joined_table = :joined AND d.key = v.k AND d.version = v.n"
                        ).bindparams(
                            bindparam("keys", type_=postgresql.ARRAY(Text)),
                            bindparam("versions", type_=postgresql.ARRAY(BigInteger)),
                        ),
                        {
                            "keys": [k for k, _ in done],
                            "versions": [v for _, v in done],
                            "joined": self.joined.name,
                        },
                    )
            elif done:
                conn.execute(
                    delete(d).where(
                        d.c.joined_table == self.joined.name,
                        d.c.key == bindparam("k"),
                        d.c.version == bindparam("v"),
                    ),
                    [{"k": k, "v": v} for k, v in done],
                )
            if done:
                # A published key still marked was written after this pass read it: its first
                # unpublished write is later than the pass began, which keeps it for the next.
                published = in_values(conn, d.c.key, [k for k, _ in done])
                conn.execute(
                    update(d)
                    .where(mine, published, d.c.lease_owner == self.id)
                    .values(marked_at=time.time())
                )
            conn.execute(
                update(d)
                .where(mine, d.c.lease_owner == self.id)
                .values(leased_until=None, lease_owner=None)
            )

    def __repr__(self) -> str:
        return f"Republisher({self.joined.name!r}, every={self.every})"
