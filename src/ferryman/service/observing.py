"""What a scrape and a health check ask of a Service: lag, outbox, republishers, readiness.

Each answer is a round trip to the broker, the registry or the database, made when asked (a
Prometheus scrape, a GET /health/ready), never on the service's hot path. The questions run in
other threads (the HTTP server's), so the service's ``stop()`` first ends them (``close``):
closing a Kafka client while a thread is inside a call on it crashes the process.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy import func, inspect, select, text

from ferryman.observability.health import Check
from ferryman.observability.metrics import (
    MirrorFigures,
    Observer,
    OutboxFigures,
    PartitionLag,
)
from ferryman.runtime.connections import Connections
from ferryman.service.data import ServiceData
from ferryman.stores.outbox import outbox_table

T = TypeVar("T")

CHECK_TIMEOUT = 3.0
"""Seconds one readiness probe may take: a registry client retrying a refused connection
must not hide the other checks' answers."""


class _Closed(Exception):
    """The service is not running: ask it nothing (that would reopen what stop() closed)."""


class ServiceProbes:
    """The Probes (metrics) and health checks of one service."""

    def __init__(
        self,
        name: str,
        conn: Connections,
        data: ServiceData,
        metrics: Observer,
        *,
        group: Callable[[], str],
        started: Callable[[], bool],
        consuming: Callable[[], bool],
        polls: Callable[[], int | None],
    ) -> None:
        self.name = name
        self._conn = conn
        self._data = data
        self._metrics = metrics
        self._group = group
        self._started = started
        self._consuming = consuming
        self._polls = polls
        self._last_polls: tuple[int, float] | None = None
        self._asking = 0
        self._closed = False
        self._idle = threading.Condition()

    @contextlib.contextmanager
    def _asked(self) -> Iterator[None]:
        """Around every question to the broker, registry or database."""
        with self._idle:
            if self._closed or not self._started():
                raise _Closed
            self._asking += 1
        try:
            yield
        finally:
            with self._idle:
                self._asking -= 1
                self._idle.notify_all()

    def open(self) -> None:
        """The service started: questions may be asked."""
        with self._idle:
            self._closed = False

    def close(self, timeout: float = 60.0) -> None:
        """Refuse new questions and wait for those under way (before connections close)."""
        with self._idle:
            self._closed = True
            self._idle.wait_for(lambda: self._asking == 0, timeout)

    def _ask(self, question: Callable[[], T], default: T) -> T:
        try:
            with self._asked():
                return question()
        except _Closed:
            return default

    # -- Probes (observability/metrics.py) ----------------------------------------------

    def consumer_lag(self) -> Sequence[PartitionLag]:
        return self._ask(self._consumer_lag, [])

    def mirror_lag(self) -> Sequence[MirrorFigures]:
        return self._ask(self._mirror_lag, [])

    def outbox(self) -> OutboxFigures | None:
        return self._ask(self._outbox, None)

    def pending_keys(self) -> Mapping[str, int]:
        return self._ask(self._pending_keys, {})

    def _consumer_lag(self) -> Sequence[PartitionLag]:
        group = self._group()
        owned = self._metrics.owned(group)
        if not owned:
            return []
        admin = self._conn.admin
        lags: list[PartitionLag] = []
        for topic in sorted({tp.topic for tp in owned}):
            for tp, n in sorted(admin.group_lag(group, topic).items()):
                if tp in owned:
                    lags.append(PartitionLag(group, tp, n))
        return lags

    def _mirror_lag(self) -> Sequence[MirrorFigures]:
        if not self._data.mirrors and not self._data.joins.parts:
            return []
        return [
            MirrorFigures(topic, lag.offsets, lag.seconds)
            for topic, lag in sorted(self._data.lag().items())
        ]

    def _outbox(self) -> OutboxFigures | None:
        if not self._data.database_opened:
            return None
        database = self._data.database
        with database.engine.connect() as conn:
            table = outbox_table(database.metadata)
            if not inspect(conn).has_table(table.name):
                return None
            rows, oldest = conn.execute(select(func.count(), func.min(table.c.created_at))).one()
        if oldest is None:
            return OutboxFigures(int(rows), 0.0)
        if oldest.tzinfo is None:  # SQLite gives naive datetimes back
            oldest = oldest.replace(tzinfo=UTC)
        return OutboxFigures(int(rows), max(0.0, (datetime.now(UTC) - oldest).total_seconds()))

    def _pending_keys(self) -> Mapping[str, int]:
        return {topic: rep.pending() for topic, (_, rep) in self._data.joins.republishers.items()}

    # -- health (observability/http.py) -------------------------------------------------

    def live(self) -> list[Check]:
        """The poll thread is polling (when the service consumes)."""
        polls = self._polls()
        if polls is None:
            return [Check("consumer", True, "not consuming")]
        now = time.monotonic()
        last, self._last_polls = self._last_polls, (polls, now)
        if last is None or polls != last[0] or now - last[1] < 5.0:
            return [Check("consumer", True, f"{polls} polls")]
        return [Check("consumer", False, f"no poll for {now - last[1]:.0f}s")]

    def ready(self) -> list[Check]:
        """Partitions assigned, the broker, the registry and the database answer."""
        if self._closed or not self._started():
            return [Check("service", False, "not started, or stopped")]
        probes: list[tuple[str, Callable[[], str]]] = [
            ("broker", self._broker_answers),
            ("registry", lambda: f"{len(self._conn.registry.subjects())} subjects"),
        ]
        if self._data.database_opened:
            probes.append(("database", self._database_answers))
        checks = self._checked(probes)
        if self._consuming():
            owned = len(self._metrics.owned(self._group()))
            checks.append(Check("partitions", owned > 0, f"{owned} assigned"))
        return checks

    def _broker_answers(self) -> str:
        """The broker lists its topics. librdkafka may answer from its metadata cache for a
        while after a broker went away; a consuming service's lost partitions say it sooner."""
        return f"{len(self._conn.admin.list_topics())} topics"

    def _database_answers(self) -> str:
        with self._data.database.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return "answers"

    def _checked(self, probes: list[tuple[str, Callable[[], str]]]) -> list[Check]:
        """Each probe run at once in a daemon thread of its own, failed past CHECK_TIMEOUT
        (the thread goes on; ``close`` waits for it)."""
        results: dict[str, Check] = {}

        def run(name: str, probe: Callable[[], str]) -> None:
            try:
                with self._asked():
                    results[name] = Check(name, True, probe())
            except _Closed:
                results[name] = Check(name, False, "the service stopped")
            except Exception as exc:
                results[name] = Check(name, False, f"{type(exc).__name__}: {exc}"[:300])

        threads = [
            threading.Thread(target=run, args=p, name=f"ferryman-check-{p[0]}", daemon=True)
            for p in probes
        ]
        for t in threads:
            t.start()
        deadline = time.monotonic() + CHECK_TIMEOUT
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return [
            results.get(name, Check(name, False, f"no answer within {CHECK_TIMEOUT:.0f}s"))
            for name, _ in probes
        ]
