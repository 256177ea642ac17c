"""The consumer loop: a polling thread feeding per-partition asyncio workers.

The Broker protocol is synchronous and a Consumer belongs to one thread, so one thread polls,
pauses, resumes and commits; records cross to the event loop in batches. Each partition has a
worker task: order is kept within a partition while partitions run in parallel. A partition with
more than ``max_in_flight`` records fetched but not handled is paused until half is drained.

An offset is committed only after its record was handled (or dead-lettered). On revoke the
partition's worker finishes the record it is on, then its offset is committed; records fetched
but not started are dropped, and the next owner reads them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ferryman.broker import KafkaLocation
from ferryman.broker.base import Consumer
from ferryman.config import ServiceConfig
from ferryman.errors import (
    CommitFailed,
    ConfigError,
    DecodeError,
    HandlerError,
    RecordRejected,
    RegistryError,
)
from ferryman.records import Record, RecordBatch, TopicPartition
from ferryman.runtime.connections import Connections
from ferryman.runtime.dead_letters import dead_letter
from ferryman.runtime.handlers import Outcome, Route
from ferryman.schema.base import SchemaLookupNeeded
from ferryman.topics import dlq_name

log = logging.getLogger("ferryman.runtime")

CHUNK = 64
"""Records handed to a one-at-a-time handler per step (one thread hop for sync handlers)."""
POLL_TIMEOUT = 0.1
DEFAULT_MAX_POLL_INTERVAL_MS = 300_000
UNDECODABLE_LOG_INTERVAL = 60.0
"""Seconds between warnings about undecodable records of one partition (the rest are counted)."""


class UndecodableLog:
    """Warns of undecodable records, at most one line per partition per ``interval`` seconds:
    a flood of bad records must not flood the log, yet none goes to the DLQ unmentioned."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._interval = interval
        self._clock = clock
        self._last: dict[tuple[str, int], float] = {}
        self._suppressed: dict[tuple[str, int], int] = {}

    def warn(self, record: Record, reason: BaseException, dlq: str) -> None:
        where = (record.topic, record.partition)
        now = self._clock()
        last = self._last.get(where)
        if last is not None and now - last < self._interval:
            self._suppressed[where] = self._suppressed.get(where, 0) + 1
            return
        self._last[where] = now
        suppressed = self._suppressed.pop(where, 0)
        self._log.warning(
            "undecodable record %s[%d]@%d sent to %s: %s%s",
            record.topic,
            record.partition,
            record.offset,
            dlq,
            reason,
            f" ({suppressed} more undecodable record(s) of this partition dead-lettered in the "
            f"last {self._interval:.0f}s without a warning)"
            if suppressed
            else "",
        )


def max_poll_interval(connections: Connections, config: ServiceConfig) -> float:
    """Seconds a handler may hold its records before its member leaves the group: Kafka's
    ``max.poll.interval.ms``, from the service's consumer_config or FERRYMAN_KAFKA_*."""
    raw = config.consumer_config.get("max.poll.interval.ms")
    broker = connections.locations.broker
    if raw is None and isinstance(broker, KafkaLocation):
        raw = broker.config.get("max.poll.interval.ms")
    try:
        ms = int(raw if raw is not None else DEFAULT_MAX_POLL_INTERVAL_MS)
    except ValueError:
        raise ConfigError(
            f"max.poll.interval.ms={raw!r}: write a whole number of milliseconds, e.g. 300000"
        ) from None
    if ms < 1:
        raise ConfigError(f"max.poll.interval.ms={raw!r}: write a number of milliseconds >= 1")
    return ms / 1000


@dataclass(eq=False)
class _Worker:
    tp: TopicPartition
    route: Route
    queue: deque[tuple[int, list[Record]]] = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    interrupt: asyncio.Event = field(default_factory=asyncio.Event)
    generation: int = 0
    abandoned: int = -1
    task: asyncio.Task[None] | None = None


class _Abandoned(Exception):
    """The partition was revoked or the service is stopping: leave the record uncommitted."""


class ConsumerLoop:
    """Consumes ``routes``' topics in ``group`` and drives their handlers."""

    def __init__(
        self,
        connections: Connections,
        group: str,
        routes: dict[str, Route],
        config: ServiceConfig,
        on_fatal: Callable[[BaseException], None],
    ) -> None:
        self._conn = connections
        self.group = group
        self._routes = routes
        self._config = config
        self._on_fatal = on_fatal
        self._lock = threading.Lock()
        self._epochs: dict[TopicPartition, int] = {}
        self._in_flight: dict[TopicPartition, int] = {}
        self._done: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()
        self._to_resume: set[TopicPartition] = set()
        self._workers: dict[TopicPartition, _Worker] = {}
        self._decoders: dict[tuple[str, bool], Callable[[Record], Any]] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Consumer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.failure: BaseException | None = None
        self._undecodable = UndecodableLog(log, UNDECODABLE_LOG_INTERVAL)
        self._busy: dict[TopicPartition, float] = {}
        self._max_poll_interval = max_poll_interval(connections, config)
        self.dead_lettered = 0
        self.handled = 0
        self.registry_retries = 0
        self.polls = 0

    def in_flight(self) -> dict[TopicPartition, int]:
        """Records fetched but not yet handled, per partition (bounded by ``max_in_flight``)."""
        with self._lock:
            return {tp: n for tp, n in self._in_flight.items() if n}

    def paused(self) -> set[TopicPartition]:
        """Partitions paused for back-pressure."""
        with self._lock:
            return set(self._paused)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._consumer = await asyncio.to_thread(self._join)
        self._thread = threading.Thread(
            target=self._poll_forever, name=f"ferryman-poll-{self.group}", daemon=True
        )
        self._thread.start()

    async def stop(self) -> None:
        """Stop fetching, finish what was fetched, commit, leave the group."""
        self._stopping.set()
        for w in self._workers.values():
            w.interrupt.set()  # a record waiting out a back-off is left uncommitted, not waited for
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        try:
            await asyncio.wait_for(self._drain(), self._config.shutdown_timeout)
        except TimeoutError:
            log.warning(
                "group %s: handlers still running after %.0fs; their records stay uncommitted "
                "and will be read again",
                self.group,
                self._config.shutdown_timeout,
            )
        for w in self._workers.values():
            if w.task is not None:
                w.task.cancel()
        await asyncio.gather(
            *(w.task for w in self._workers.values() if w.task is not None),
            return_exceptions=True,
        )
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await asyncio.to_thread(self._close, consumer)

    def _join(self) -> Consumer:
        """A new member of the group, subscribed to the routes' topics."""
        consumer = self._conn.broker.consumer(
            self.group,
            auto_offset_reset=self._config.auto_offset_reset,
            config=dict(self._config.consumer_config) or None,
        )
        consumer.subscribe(sorted(self._routes), on_assign=self._assigned, on_revoke=self._revoked)
        return consumer

    def _close(self, consumer: Consumer) -> None:
        try:
            self._commit(consumer, force=True)
        finally:
            consumer.close()

    async def _drain(self) -> None:
        for w in list(self._workers.values()):
            while w.queue or not w.idle.is_set():
                w.wakeup.set()
                await w.idle.wait()
                if w.queue:
                    await asyncio.sleep(0)

    # -- the polling thread ---------------------------------------------------------------

    def _poll_forever(self) -> None:
        consumer: Consumer | None = self._consumer
        assert consumer is not None
        last_commit = time.monotonic()
        try:
            while not self._stopping.is_set():
                if self._held_too_long():
                    if consumer is not None:
                        self._withdraw(consumer)
                        consumer = self._consumer = None
                    self._stopping.wait(POLL_TIMEOUT)
                    continue
                if consumer is None:
                    log.warning("group %s: the stuck handler returned; joining again", self.group)
                    consumer = self._consumer = self._join()
                self._flow_control(consumer)
                now = time.monotonic()
                if now - last_commit >= self._config.commit_interval:
                    self._commit(consumer)
                    last_commit = now
                records = consumer.poll(POLL_TIMEOUT, self._config.poll_records)
                self.polls += 1  # read by tests and diagnostics: the poll loop is alive
                if records:
                    self._hand_over(consumer, records)
        except BaseException as exc:
            self._fail(exc)

    def _hand_over(self, consumer: Consumer, records: RecordBatch) -> None:
        by_key: dict[tuple[str, int], list[Record]] = {}
        for r in records:
            recs = by_key.get((r.topic, r.partition))
            if recs is None:
                by_key[(r.topic, r.partition)] = [r]
            else:
                recs.append(r)
        by_tp = {TopicPartition(*k): recs for k, recs in by_key.items()}
        batches: list[tuple[TopicPartition, int, list[Record]]] = []
        to_pause: list[TopicPartition] = []
        with self._lock:
            for tp, recs in by_tp.items():
                count = self._in_flight.get(tp, 0) + len(recs)
                self._in_flight[tp] = count
                if count >= self._config.max_in_flight and tp not in self._paused:
                    self._paused.add(tp)
                    to_pause.append(tp)
                batches.append((tp, self._epochs.get(tp, 0), recs))
        if to_pause:
            consumer.pause(to_pause)
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._dispatch, batches)

    def _held_too_long(self, tp: TopicPartition | None = None) -> bool:
        """Whether a handler (of ``tp``, or any) has held its records past max.poll.interval.ms."""
        limit = time.monotonic() - self._max_poll_interval
        with self._lock:
            if tp is not None:
                return self._busy.get(tp, limit) < limit
            return any(since < limit for since in self._busy.values())

    def _withdraw(self, consumer: Consumer) -> None:
        """Leave the group while a handler is stuck, as a Kafka consumer that stops polling
        does: the poll thread would otherwise keep the stuck member's partitions forever."""
        with self._lock:
            stuck = sorted(
                tp
                for tp, since in self._busy.items()
                if since < time.monotonic() - self._max_poll_interval
            )
        log.warning(
            "group %s: the handler of %s has held its records for more than "
            "max.poll.interval.ms=%d; leaving the group so that other members take its "
            "partitions over (this member joins again once the handler returns)",
            self.group,
            ", ".join(map(str, stuck)),
            int(self._max_poll_interval * 1000),
        )
        try:
            self._revoked(consumer.assignment())  # commits what is done; the stuck stay open
        finally:
            consumer.close()

    def _flow_control(self, consumer: Consumer) -> None:
        if not self._to_resume:
            return
        with self._lock:
            resume, self._to_resume = self._to_resume, set()
            self._paused -= resume
        owned = resume & consumer.assignment()
        if owned:
            consumer.resume(owned)

    def _commit(self, consumer: Consumer, *, force: bool = False) -> None:
        with self._lock:
            offsets = {tp: off for tp, off in self._done.items() if self._committed.get(tp) != off}
        if not offsets:
            return
        try:
            consumer.commit(offsets)
        except CommitFailed as exc:
            # The partitions moved to another member, which resumes from the last commit.
            log.warning("group %s: commit of %s failed: %s", self.group, offsets, exc)
            if not force:
                with self._lock:
                    for tp in offsets:
                        self._done.pop(tp, None)
            return
        with self._lock:
            self._committed.update(offsets)

    def _assigned(self, partitions: set[TopicPartition]) -> None:
        log.debug("group %s: assigned %s", self.group, sorted(partitions))

    def _revoked(self, partitions: set[TopicPartition]) -> None:
        consumer = self._consumer
        loop = self._loop
        if loop is not None and not loop.is_closed():
            done = asyncio.run_coroutine_threadsafe(self._quiesce(partitions), loop)
            try:
                done.result(self._config.shutdown_timeout)
            except Exception as exc:
                log.warning(
                    "group %s: handlers of revoked %s did not finish: %r",
                    self.group,
                    sorted(partitions),
                    exc,
                )
        with self._lock:
            offsets = {tp: self._done[tp] for tp in partitions if tp in self._done}
            for tp in partitions:
                self._epochs[tp] = self._epochs.get(tp, 0) + 1
                self._in_flight.pop(tp, None)
                self._done.pop(tp, None)
                self._committed.pop(tp, None)
                self._paused.discard(tp)
                self._to_resume.discard(tp)
        if offsets and consumer is not None:
            try:
                consumer.commit(offsets)
            except CommitFailed as exc:
                log.warning("group %s: commit on revoke failed: %s", self.group, exc)

    # -- the event loop side --------------------------------------------------------------

    def _dispatch(self, batches: list[tuple[TopicPartition, int, list[Record]]]) -> None:
        for tp, epoch, recs in batches:
            w = self._workers.get(tp)
            if w is None:
                w = _Worker(tp, self._routes[tp.topic])
                w.idle.set()
                w.task = asyncio.get_running_loop().create_task(
                    self._work(w), name=f"ferryman-{self.group}-{tp}"
                )
                self._workers[tp] = w
            w.queue.append((epoch, recs))
            w.wakeup.set()

    async def _quiesce(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            w = self._workers.get(tp)
            if w is None:
                continue
            w.queue.clear()
            w.generation += 1
            w.interrupt.set()
            if w.task is None or w.task.done() or self._held_too_long(tp):
                continue  # cancelled at shutdown, or stuck: its records stay uncommitted
            await w.idle.wait()

    async def _work(self, w: _Worker) -> None:
        while True:
            if not w.queue:
                w.idle.set()
                w.wakeup.clear()
                await w.wakeup.wait()
                continue
            w.idle.clear()
            epoch, chunk = self._take(w, w.route.batch or CHUNK)
            if self._epochs.get(w.tp, 0) != epoch or epoch == w.abandoned or self.failure:
                continue
            try:
                await self._process(w, epoch, chunk)
            except _Abandoned:
                # Handling a later record of this epoch would commit past the abandoned one.
                w.abandoned = epoch
            except BaseException as exc:
                if isinstance(exc, asyncio.CancelledError):
                    raise
                self._fail(exc)

    @staticmethod
    def _take(w: _Worker, limit: int) -> tuple[int, list[Record]]:
        """Up to ``limit`` queued records of one epoch, in order."""
        epoch, chunk = w.queue.popleft()
        if len(chunk) > limit:
            w.queue.appendleft((epoch, chunk[limit:]))
            return epoch, chunk[:limit]
        while w.queue and len(chunk) < limit and w.queue[0][0] == epoch:
            _, more = w.queue.popleft()
            room = limit - len(chunk)
            if len(more) > room:
                w.queue.appendleft((epoch, more[room:]))
            chunk = chunk + more[:room]
        return epoch, chunk

    def _decoder(self, route: Route, *, lookup: bool = False) -> Callable[[Record], Any]:
        """The route's decoder. By default it never calls the schema registry (it runs on the
        event loop, where a slow registry would stall every partition): a writer schema not
        fetched yet raises SchemaLookupNeeded, and ``_decode_on_loop`` fetches it in a thread.
        With ``lookup=True``, for threads, it fetches what it needs itself."""
        decode = self._decoders.get((route.topic.name, lookup))
        if decode is None:
            serde, topic = self._conn.serde, route.topic
            if route.input == "value":
                decode = serde.value_decoder(topic, lookup=lookup)
            else:
                key = route.input == "message"
                decode = functools.partial(serde.decode, topic, key=key, lookup=lookup)
            self._decoders[(topic.name, lookup)] = decode
        return decode

    async def _decode_on_loop(
        self, route: Route, decode: Callable[[Record], Any], r: Record
    ) -> Any:
        try:
            return decode(r)
        except SchemaLookupNeeded:
            # fetched (and decoded) in a thread; raises DecodeError / RegistryError as decode does
            return await asyncio.to_thread(self._decoder(route, lookup=True), r)

    async def _process(self, w: _Worker, epoch: int, records: list[Record]) -> None:
        decode = self._decoder(w.route)
        while True:
            try:  # the common case, a run of good records, in one pass
                values = [decode(r) for r in records]
            except SchemaLookupNeeded as need:
                try:  # a writer schema seen for the first time: fetched off the event loop
                    await asyncio.to_thread(need.load)
                except (DecodeError, RegistryError):
                    break  # record by record below, where the failure is handled
                continue
            except (DecodeError, RegistryError):
                break  # record by record below, so the ones before the bad one are handled first
            await self._handle(w, epoch, list(zip(records, values, strict=True)))
            return
        generation = w.generation
        pending: list[tuple[Record, Any]] = []
        for r in records:
            try:
                try:
                    pending.append((r, await self._decode_on_loop(w.route, decode, r)))
                    continue
                except RegistryError as exc:
                    if pending:  # in order: what came before is handled before the wait
                        await self._handle(w, epoch, pending)
                        pending = []
                    fetching = self._decoder(w.route, lookup=True)  # it runs in a thread
                    pending.append((r, await self._await_registry(w, generation, r, fetching, exc)))
                    continue
            except DecodeError as exc:
                error = exc
            if pending:
                await self._handle(w, epoch, pending)
                pending = []
            self._undecodable.warn(r, error, dlq_name(r.topic))
            await self._dead_letter(r, error, attempts=0)
            self._mark_done(w.tp, epoch, r.offset, 1)
        if pending:
            await self._handle(w, epoch, pending)

    async def _await_registry(
        self,
        w: _Worker,
        generation: int,
        record: Record,
        decode: Callable[[Record], Any],
        exc: RegistryError,
    ) -> Any:
        """``record`` decoded once the registry answers: an outage is no fault of the record, so
        it is retried with back-off (forever, or ``retries`` times with on_error='stop')."""
        attempt = 0
        while True:
            attempt += 1
            if self._config.on_error == "stop" and attempt > self._config.retries:
                error = RegistryError(
                    f"group {self.group}: cannot decode {record.topic}[{record.partition}] offset "
                    f"{record.offset}, the schema registry failed {attempt} time(s): {exc}. The "
                    "record is not committed; make the registry reachable and restart"
                )
                error.__cause__ = exc
                self._fail(error)
                raise _Abandoned
            if attempt == 1 or attempt % 10 == 0:
                log.warning(
                    "group %s: waiting for the schema registry to decode %s[%d]@%d (attempt %d): %s",
                    self.group,
                    record.topic,
                    record.partition,
                    record.offset,
                    attempt,
                    exc,
                )
            self.registry_retries += 1
            await self._back_off(w, generation, attempt)
            try:
                # In a thread: a registry that hangs must not stall the other partitions.
                return await asyncio.to_thread(decode, record)
            except RegistryError as again:
                exc = again

    async def _handle(self, w: _Worker, epoch: int, items: list[tuple[Record, Any]]) -> None:
        route = w.route
        generation = w.generation
        while items:
            handled, exc = await self._run(w, route, [m for _, m in items])
            if handled:
                self._mark_done(w.tp, epoch, items[handled - 1][0].offset, handled)
                items = items[handled:]
            if exc is None:
                continue
            failing = items if route.batch is not None else items[:1]
            attempts = 1
            # a rejected record fails the same way every time: no retry
            while exc is not None and attempts <= self._config.retries:
                if isinstance(exc, RecordRejected):
                    break
                await self._back_off(w, generation, attempts)
                _, exc = await self._run(w, route, [m for _, m in failing])
                attempts += 1
            if exc is not None:
                await self._give_up(w, failing, exc, attempts)
            self._mark_done(w.tp, epoch, failing[-1][0].offset, len(failing))
            items = items[len(failing) :]

    async def _run(self, w: _Worker, route: Route, items: list[Any]) -> Outcome:
        """``route.run(items)``, timed: the poll thread watches how long handlers hold records."""
        with self._lock:
            self._busy[w.tp] = time.monotonic()
        try:
            return await route.run(items)
        finally:
            with self._lock:
                self._busy.pop(w.tp, None)

    async def _back_off(self, w: _Worker, generation: int, attempt: int) -> None:
        if w.generation != generation or self._stopping.is_set():
            raise _Abandoned
        w.interrupt.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(w.interrupt.wait(), self._config.delay(attempt))
        if w.generation != generation or self._stopping.is_set():
            raise _Abandoned

    async def _give_up(
        self,
        w: _Worker,
        failing: list[tuple[Record, Any]],
        exc: BaseException,
        attempts: int,
    ) -> None:
        record = failing[0][0]
        if self._config.on_error == "stop" and not isinstance(exc, RecordRejected):
            error = HandlerError(
                f"handler {w.route.name} failed on {record.topic}[{record.partition}] offset "
                f"{record.offset} after {attempts} attempt(s): {type(exc).__name__}: {exc}. "
                "The record is not committed; fix the cause and restart, or use "
                "ServiceConfig(on_error='dead-letter') to park such records in "
                f"{dlq_name(record.topic)}"
            )
            error.__cause__ = exc
            self._fail(error)
            raise _Abandoned
        log.error(
            "group %s: %s failed %d time(s) on %s[%d]@%d, sending to %s: %r",
            self.group,
            w.route.name,
            attempts,
            record.topic,
            record.partition,
            record.offset,
            dlq_name(record.topic),
            exc,
        )
        for r, _ in failing:
            await self._dead_letter(r, exc, attempts)

    async def _dead_letter(self, record: Record, exc: BaseException, attempts: int) -> None:
        await asyncio.wrap_future(
            dead_letter(self._conn.producer, record, self.group, exc, attempts)
        )
        self.dead_lettered += 1

    def _mark_done(self, tp: TopicPartition, epoch: int, offset: int, count: int) -> None:
        self.handled += count
        with self._lock:
            if self._epochs.get(tp, 0) != epoch:
                return
            self._done[tp] = offset + 1
            left = self._in_flight.get(tp, 0) - count
            self._in_flight[tp] = left
            if tp in self._paused and left <= self._config.max_in_flight // 2:
                self._to_resume.add(tp)

    def _fail(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = exc
            log.error("group %s: stopping: %s", self.group, exc, exc_info=exc)
        self._stopping.set()
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._on_fatal(exc)
        else:
            loop.call_soon_threadsafe(self._on_fatal, exc)
