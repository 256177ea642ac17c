"""What the consumer loop runs for the database's routes: mirrors and transactional handlers.

Each run takes one partition's decoded records (anything with ``topic``, ``partition``,
``offset``, ``key``, ``value`` and ``timestamp``, such as the runtime's Message) and applies them
in one transaction with their offsets in ``ferryman_offsets``, so a redelivered record changes
nothing: effectively once. A run returns ``(handled, error)`` as the runtime's routes do: all of
the records, or none of them with the error (the transaction rolled back); the failure policy
retries, then applies the records one by one and dead-letters only the one that fails.

``stored_offsets`` is where reading starts on assignment: the database's offsets, not the group's.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import repeat
from typing import Any, NamedTuple, Protocol

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from ferryman.errors import ConfigError, PoisonedRecord, StoreError
from ferryman.records import TopicPartition
from ferryman.stores.database import Database
from ferryman.stores.mirror import Applied, MirrorRecord

Outcome = tuple[int, BaseException | None]
"""How many records, from the front, were applied, and the error that stopped the rest."""


class Consumed(Protocol):
    """A decoded record as the consumer loop hands it over (the runtime's Message is one)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> Any: ...
    @property
    def value(self) -> Any: ...
    @property
    def timestamp(self) -> int: ...


class Applier(Protocol):
    """A store that applies a run of decoded records in the caller's transaction and saves
    their offsets there: ``Mirror`` and ``JoinedTable`` parts."""

    def apply(self, conn: Connection, records: Iterable[Any], group: str) -> Applied: ...


class MirrorLag(NamedTuple):
    """How far a mirror is behind its topic: ``offsets`` not applied yet (summed over
    partitions) and ``seconds`` since the timestamp of the last record applied (0 when caught
    up, None before the first record)."""

    offsets: int
    seconds: float | None


def stored_offsets(
    database: Database, group: str
) -> Callable[[set[TopicPartition]], dict[TopicPartition, int]]:
    """Where reading starts on assignment: the next offsets stored in ``database``."""

    def load(partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
        with database.read() as conn:
            return database.offsets.load(conn, group, partitions)

    return load


class StoreRun:
    """Applies runs of one topic's records through ``store`` (a Mirror), one transaction each;
    ``applied(n)`` is told how many records each committed run applied (metrics)."""

    def __init__(
        self,
        database: Database,
        store: Applier,
        group: str,
        applied: Callable[[int], None] | None = None,
    ) -> None:
        self.database = database
        self.store = store
        self.group = group
        self.applied = applied

    def __call__(self, items: Sequence[Consumed]) -> Outcome:
        # The loop's Keyed tuples have MirrorRecord's fields in its order: the store reads
        # them as they are.
        records: Sequence[Any] = (
            items if all(map(isinstance, items, repeat(tuple))) else [_record_of(m) for m in items]
        )

        def apply(conn: Connection) -> Applied:
            applied = self.store.apply(conn, records, self.group)
            if applied.poisoned:  # roll back: the policy isolates the record, then skips it
                first = applied.poisoned[0]
                r = first.record
                raise PoisonedRecord(
                    f"{self.store!r} could not apply {r.topic}[{r.partition}]@{r.offset} "
                    f"(key {r.key!r}): {type(first.error).__name__}: {first.error}"
                ) from first.error
            return applied

        try:  # on SQLite, in one transaction with other partitions' runs waiting meanwhile
            applied = self.database.grouped(apply)
        except Exception as exc:
            return 0, exc
        if self.applied is not None:
            self.applied(applied.applied)
        return len(items), None


def _record_of(m: Consumed) -> MirrorRecord:
    return MirrorRecord(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp)


class TransactionalRun:
    """Calls a handler with a session per run of records; the session commits with the
    records' offsets, and records applied before (by offset) are skipped."""

    def __init__(
        self,
        database: Database,
        fn: Callable[..., Any],
        group: str,
        *,
        batch: bool,
        with_message: bool,
        session_param: str,
    ) -> None:
        self.database = database
        self.fn = fn
        self.group = group
        self.batch = batch
        self.with_message = with_message
        self.session_param = session_param

    def __call__(self, items: Sequence[Consumed]) -> Outcome:
        try:
            with self.database.turn(), self.database.session() as session:
                conn = session.connection()
                # (topic, partition) pairs, not a TopicPartition per record: this runs per record
                partitions = {(m.topic, m.partition) for m in items}
                stored = self.database.offsets.load(
                    conn, self.group, [TopicPartition(*p) for p in partitions], lock=True
                )
                floor = {(tp.topic, tp.partition): offset for tp, offset in stored.items()}
                fresh = (
                    [m for m in items if m.offset >= floor.get((m.topic, m.partition), -1)]
                    if floor
                    else list(items)
                )
                self._call(fresh, session)
                session.flush()
                if self.database.transaction_lost(conn):
                    name = getattr(self.fn, "__qualname__", repr(self.fn))
                    raise StoreError(
                        f"SQLite ended the transaction of handler {name} before the "
                        "records' offsets were saved (a full disk, an I/O error, or a ROLLBACK "
                        "the handler ran); its writes before that are undone, so the records "
                        "are not marked done and go through the retry policy again"
                    )
                last: dict[tuple[str, int], Consumed] = {}
                for m in fresh:
                    where = (m.topic, m.partition)
                    seen = last.get(where)
                    if seen is None or m.offset > seen.offset:
                        last[where] = m
                offsets = {TopicPartition(*p): m.offset + 1 for p, m in last.items()}
                stamps = {TopicPartition(*p): m.timestamp for p, m in last.items()}
                self.database.offsets.save(conn, self.group, offsets, stamps)
        except Exception as exc:
            return 0, exc
        return len(items), None

    def _call(self, items: list[Consumed], session: Session) -> None:
        kw = {self.session_param: session}
        if self.batch:
            if not items:
                return
            values = [m.value for m in items]
            if self.with_message:
                self.fn(values, list(items), **kw)
            else:
                self.fn(values, **kw)
            return
        for m in items:
            if self.with_message:
                self.fn(m.value, m, **kw)
            else:
                self.fn(m.value, **kw)


def session_parameter(fn: Callable[..., Any]) -> str | None:
    """The name of ``fn``'s parameter that asks for a database session: one named ``session``
    or annotated ``sqlalchemy.orm.Session``; None when it asks for none."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return None
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # an annotation that does not resolve: fall back to its text
        hints = {}
    for name, p in params.items():
        hint = hints.get(name, p.annotation)
        if isinstance(hint, type) and issubclass(hint, Session):
            return name
        if isinstance(hint, str) and hint.rsplit(".", 1)[-1] == "Session":
            return name
    return "session" if "session" in params else None


def other_positionals(fn: Callable[..., Any], session_param: str) -> int:
    """How many positional parameters ``fn`` takes besides the session: 1 (the value) or 2 (the
    value and the Message)."""
    params = [
        p
        for name, p in inspect.signature(fn).parameters.items()
        if name != session_param
        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        and p.default is p.empty
    ]
    if len(params) not in (1, 2):
        raise ConfigError(
            f"handler {getattr(fn, '__qualname__', fn)!r} takes {len(params)} positional "
            "parameter(s) besides the session; write fn(event, session) or "
            "fn(event, message, session)"
        )
    return len(params)


def mirror_lag(
    conn: Connection,
    database: Database,
    group: str,
    topic: str,
    latest: Mapping[int, int],
    now: float | None = None,
) -> MirrorLag:
    """The lag of ``group``'s mirror of ``topic``, whose partitions end at ``latest`` (the
    high watermarks), from the offsets and timestamps stored with the rows."""
    stored = database.offsets.load(conn, group, [TopicPartition(topic, p) for p in latest])
    behind = sum(max(0, end - stored.get(TopicPartition(topic, p), 0)) for p, end in latest.items())
    stamps = [
        ms for tp, ms in database.offsets.timestamps(conn, group).items() if tp.topic == topic
    ]
    now = time.time() if now is None else now
    if not stamps:
        seconds = None
    elif not behind:
        seconds = 0.0  # caught up: the table is as fresh as the topic, however old its last record
    else:
        seconds = max(0.0, now - max(stamps) / 1000)
    return MirrorLag(behind, seconds)


LAG_REFRESH = 2.0
"""Seconds between two reads of the mirrors' lag for ``LagStats`` (at most)."""

log = logging.getLogger("ferryman.stores")


class LagStats:
    """The mirrors' lag as counters for ``Service.stats``, which must be cheap: the lag (high
    watermarks from the broker, offsets from the database) is read by ``read`` in a thread of
    its own, at most every ``every`` seconds and only while the counters are asked for, so
    asking never waits. Between reads the seconds go on counting while records wait.

    ``mirror_lag_records``: records not applied yet, summed over mirrors; ``mirror_lag_ms``:
    the most any mirror is behind, in milliseconds since the timestamp of the last record it
    applied (0 when caught up, -1 when records wait and none was applied yet). Both are as of
    the last read (at most ``every`` seconds and one read old; 0 before the first read).
    """

    def __init__(
        self,
        read: Callable[[], Mapping[str, MirrorLag]],
        every: float = LAG_REFRESH,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._every = every
        self._clock = clock
        self._lock = threading.Lock()
        self._reading = False
        self._read_at = -float("inf")
        self._lags: Mapping[str, MirrorLag] = {}
        self._active = False

    def start(self) -> None:
        """Allow reads (the service's connections are open)."""
        self._active = True

    def stop(self) -> None:
        """No more reads; the counters keep the last figures."""
        self._active = False

    def __call__(self) -> dict[str, int]:
        now = self._clock()
        with self._lock:
            stale = self._active and not self._reading and now - self._read_at >= self._every
            if stale:
                self._reading = True
            lags, read_at = self._lags, self._read_at
        if stale:
            threading.Thread(target=self._refresh, name="ferryman-lag", daemon=True).start()
        behind = sum(lag.offsets for lag in lags.values())
        ms = 0
        for lag in lags.values():
            if not lag.offsets:
                continue
            if lag.seconds is None:
                ms = ms if ms > 0 else -1
                continue
            ms = max(ms, int((lag.seconds + max(0.0, now - read_at)) * 1000))
        return {"mirror_lag_records": behind, "mirror_lag_ms": ms}

    def _refresh(self) -> None:
        try:
            lags = dict(self._read())
        except Exception as exc:  # the broker or database away: keep the last figures
            if self._active:  # (at shutdown the connections may close under the read)
                log.warning("reading the mirrors' lag failed, kept the last figures: %r", exc)
            lags = None
        with self._lock:
            if lags is not None:
                self._lags = lags
                self._read_at = self._clock()
            else:
                self._read_at = self._clock()  # try again after ``every``, not at once
            self._reading = False
