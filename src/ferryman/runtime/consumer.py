"""The consumer loop: a polling thread feeding per-partition asyncio workers.

The Broker protocol is synchronous and a Consumer belongs to one thread, so one thread polls,
pauses, resumes and commits; records cross to the event loop in batches, as rows. Each partition
has a worker task: order is kept within a partition while partitions run in parallel. Offsets
and pauses are kept by ``offsets``, failures decided by ``policy``, decoding done by ``decoding``.

An offset is committed only after its record was handled (or dead-lettered). On revoke the
partition's worker finishes the record it is on, then its offset is committed; records fetched
but not started are dropped, and the next owner reads them again.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter
from typing import Any

from ferryman.broker.base import Consumer
from ferryman.clock import current as current_clock
from ferryman.config import ServiceConfig
from ferryman.errors import CommitFailed, DecodeError, RegistryError
from ferryman.records import Polled, Record, TopicPartition, settled
from ferryman.runtime.assignment import seek_pending, stored_positions
from ferryman.runtime.connections import Connections
from ferryman.runtime.dead_letters import dead_letter
from ferryman.runtime.decoding import (
    UndecodableLog,
    decode_all,
    decode_off_loop,
    route_decoders,
)
from ferryman.runtime.handlers import Outcome, Route, RunItems
from ferryman.runtime.offsets import Offsets
from ferryman.runtime.policy import Abandoned, FailurePolicy, Item
from ferryman.runtime.watchdog import max_poll_interval
from ferryman.topics import RequestTopic, dlq_name

log = logging.getLogger("ferryman.runtime")

CHUNK = 64
"""Records handed to a one-at-a-time handler per step (one thread hop for sync handlers). A
revoke waits for the step in progress, so a bigger one (256 was tried) slows rebalances with a
slow handler for a gain lost in the noise of bench/peers.py."""
POLL_TIMEOUT = 0.1
STALL = 1.0
"""Seconds the poll thread waits for room before it pauses the partitions that made no
progress meanwhile (a stuck or slow handler must not hold the others' room)."""
UNDECODABLE_LOG_INTERVAL = 60.0
"""Seconds between warnings about undecodable records of one partition (the rest are counted)."""

_partition_of = itemgetter(0, 1)

YOUNG_THRESHOLD = 20_000
"""The garbage collector's young-generation threshold while a consumer loop runs."""

_heap_lock = threading.Lock()
_heap_users = 0
_heap_thresholds: tuple[int, int, int] | None = None


def _tune_heap() -> None:
    """Tune the garbage collector for the records flowing through, when the first consumer
    loop starts, until the last one stops (``_untune_heap``).

    Records in flight are containers that outlive many young collections (700 allocations
    apart by default) and so trigger full ones, each walking the whole startup heap again: the
    collector took a fifth of a Service's CPU on Kafka (docs/benchmarks.md). So what exists at
    start (modules, classes, schemas, the service) is frozen out of collections, and young
    collections run every YOUNG_THRESHOLD allocations, unless the application chose more.
    Frozen objects are still freed by reference counting; the garbage of the moment is
    collected first.
    """
    global _heap_users, _heap_thresholds
    with _heap_lock:
        _heap_users += 1
        if _heap_users == 1:
            gc.collect()
            gc.freeze()
            young, *older = gc.get_threshold()
            if 0 < young < YOUNG_THRESHOLD:
                _heap_thresholds = (young, *older)  # type: ignore[assignment]
                gc.set_threshold(YOUNG_THRESHOLD, *older)


def _untune_heap() -> None:
    global _heap_users, _heap_thresholds
    with _heap_lock:
        _heap_users -= 1
        if _heap_users == 0:
            gc.unfreeze()
            if _heap_thresholds is not None and gc.get_threshold()[0] == YOUNG_THRESHOLD:
                gc.set_threshold(*_heap_thresholds)  # unless the application changed it since
            _heap_thresholds = None


@dataclass(eq=False)
class _Worker:
    tp: TopicPartition
    route: Route
    queue: deque[tuple[int, list[Polled]]] = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    interrupt: asyncio.Event = field(default_factory=asyncio.Event)
    generation: int = 0
    abandoned: int = -1
    task: asyncio.Task[None] | None = None


class _Run:
    """One worker's run of records of one epoch, as the failure policy sees its partition."""

    __slots__ = ("_epoch", "_generation", "_loop", "_worker", "tp")

    def __init__(self, loop: ConsumerLoop, worker: _Worker, epoch: int) -> None:
        self._loop = loop
        self._worker = worker
        self.tp = worker.tp
        self._epoch = epoch
        self._generation = worker.generation

    async def back_off(self, attempt: int) -> None:
        w, loop = self._worker, self._loop
        if w.generation != self._generation or loop._stopping.is_set():
            raise Abandoned
        loop._conn.metrics.retried(loop.group, self.tp)
        w.interrupt.clear()
        await current_clock().sleep(loop._config.delay(attempt), w.interrupt)
        if w.generation != self._generation or loop._stopping.is_set():
            raise Abandoned

    def handled(self, offset: int, count: int) -> None:
        loop = self._loop
        loop.handled += count
        with loop._lock:
            offsets = loop._offsets
            offsets.handled(self.tp, self._epoch, offset, count)
            if loop._waiting_for_room and offsets.room_for(loop._config.polled):
                loop._room.set()


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
        config = config.for_broker(embedded=connections.embedded())  # poll_records, if None
        self._config = config
        self._on_fatal = on_fatal
        self._lock = threading.Lock()  # guards _offsets and _busy: poll thread vs event loop
        self._offsets = Offsets(config.in_flight, config.buffered)
        self._room = threading.Event()  # set by the event loop when a full poll fits again
        self._waiting_for_room = False
        # While waiting for room: since when, and each partition's progress then.
        self._stall: tuple[float, dict[TopicPartition, int]] | None = None
        self._workers: dict[TopicPartition, _Worker] = {}
        self._policy = FailurePolicy(config, group, self._dead_letter, self._fail)
        self._stopping = threading.Event()
        self._tuned = False
        self._thread: threading.Thread | None = None
        self._consumer: Consumer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.failure: BaseException | None = None
        self._undecodable = UndecodableLog(log, UNDECODABLE_LOG_INTERVAL)
        self._busy: dict[TopicPartition, float] = {}
        self._seeks: dict[TopicPartition, int] = {}  # read on assignment, sought after the poll
        self._max_poll_interval = max_poll_interval(connections, config)
        self.dead_lettered = 0
        self.handled = 0
        self.polls = 0
        """Polls made by the poll thread: it rises while the loop is alive (liveness, in stats)."""

    @property
    def registry_retries(self) -> int:
        """Waits for the schema registry so far."""
        return self._policy.registry_retries

    def in_flight(self) -> dict[TopicPartition, int]:
        """Records fetched but not yet handled, per partition (bounded by ``max_in_flight``)."""
        with self._lock:
            return self._offsets.in_flight()

    def paused(self) -> set[TopicPartition]:
        """Partitions paused for back-pressure."""
        with self._lock:
            return self._offsets.paused()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._consumer = await asyncio.to_thread(self._join)
        if not self._tuned:
            self._tuned = True
            _tune_heap()
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
        try:
            if consumer is not None:
                await asyncio.to_thread(self._close, consumer)
        finally:
            if self._tuned:
                self._tuned = False
                _untune_heap()

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
        self._conn.metrics.revoked(self.group, self._conn.metrics.owned(self.group))
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
                if not self._wait_for_room(consumer, now):
                    self.polls += 1  # alive, waiting for the handlers (stats' liveness)
                    continue
                rows = consumer.poll_rows(POLL_TIMEOUT, self._config.polled)
                if self._seeks:  # routes that keep their offsets resume from them
                    rows = seek_pending(consumer, self._seeks, rows)
                if rows:
                    self._hand_over(consumer, rows)
                self.polls += 1
        except BaseException as exc:
            self._fail(exc)

    def _wait_for_room(self, consumer: Consumer, now: float) -> bool:
        """True when a full poll fits under ``max_buffered``; else wait (up to POLL_TIMEOUT)
        for the handlers to make room, and return False so that the caller loops (commits,
        resumes, watches for stuck handlers) before it asks again.

        Not polling, instead of pausing, keeps what librdkafka prefetched: on Kafka a paused
        partition's prefetched records are thrown away and fetched again on resume. A
        partition whose handler made no progress for STALL seconds of waiting is paused, so
        that a stuck handler does not stop the other partitions.
        """
        poll = self._config.polled
        with self._lock:
            if self._offsets.room_for(poll):
                self._stall = None
                return True
            self._room.clear()
            self._waiting_for_room = True
            stalled: set[TopicPartition] = set()
            if self._stall is None:
                self._stall = (now, self._offsets.progress())
            elif now - self._stall[0] >= STALL:
                stalled = self._offsets.stalled(self._stall[1])
                self._stall = None
        if stalled:
            owned = stalled & consumer.assignment()
            if owned:
                log.debug("group %s: pausing %s: no progress for %gs", self.group, owned, STALL)
                consumer.pause(owned)
            return False
        self._room.wait(POLL_TIMEOUT)
        self._waiting_for_room = False
        return False

    def _hand_over(self, consumer: Consumer, records: Sequence[Polled]) -> None:
        """Group the rows by partition (once; a poll's rows come in runs of one partition),
        count them in flight, pause the partitions that reach ``max_in_flight``."""
        by_partition: dict[tuple[str, int], list[Polled]] = {}
        for where, run in groupby(records, _partition_of):
            rows = by_partition.get(where)
            if rows is None:
                by_partition[where] = list(run)
            else:
                rows.extend(run)
        batches: list[tuple[TopicPartition, int, list[Polled]]] = []
        to_pause: list[TopicPartition] = []
        with self._lock:
            offsets = self._offsets
            for (topic, partition), rows in by_partition.items():
                tp = TopicPartition(topic, partition)
                if offsets.fetched(tp, len(rows)):
                    to_pause.append(tp)
                batches.append((tp, offsets.epoch(tp), rows))
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
        if not self._offsets.must_resume():  # read without the lock: a stale answer waits a poll
            return
        with self._lock:
            resume = self._offsets.take_resumes()
        owned = resume & consumer.assignment()
        if owned:
            consumer.resume(owned)

    def _commit(self, consumer: Consumer, *, force: bool = False) -> None:
        with self._lock:
            offsets = self._offsets.to_commit()
        if not offsets:
            return
        try:
            consumer.commit(offsets)
        except CommitFailed as exc:
            # The partitions moved to another member, which resumes from the last commit.
            log.warning("group %s: commit of %s failed: %s", self.group, offsets, exc)
            if not force:
                with self._lock:
                    self._offsets.commit_failed(offsets)
            return
        with self._lock:
            self._offsets.committed(offsets)

    def _assigned(self, partitions: set[TopicPartition]) -> None:
        log.debug("group %s: assigned %s", self.group, sorted(partitions))
        self._conn.metrics.assigned(self.group, partitions)
        self._seeks.update(stored_positions(self._routes, partitions))  # sought after the poll

    def _revoked(self, partitions: set[TopicPartition]) -> None:
        self._conn.metrics.revoked(self.group, partitions)
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
            offsets = self._offsets.revoke(partitions)
        if offsets and consumer is not None:
            try:
                consumer.commit(offsets)
            except CommitFailed as exc:
                log.warning("group %s: commit on revoke failed: %s", self.group, exc)

    # -- the event loop side --------------------------------------------------------------

    def _dispatch(self, batches: list[tuple[TopicPartition, int, list[Polled]]]) -> None:
        for tp, epoch, rows in batches:
            w = self._workers.get(tp)
            if w is None:
                w = _Worker(tp, self._routes[tp.topic])
                w.idle.set()
                w.task = asyncio.get_running_loop().create_task(
                    self._work(w), name=f"ferryman-{self.group}-{tp}"
                )
                self._workers[tp] = w
            w.queue.append((epoch, rows))
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
            if self._offsets.epoch(w.tp) != epoch or epoch == w.abandoned or self.failure:
                continue
            try:
                await self._process(_Run(self, w, epoch), w.route, chunk)
                self._conn.metrics.consumed(self.group, w.tp, chunk)
            except Abandoned:
                # Handling a later record of this epoch would commit past the abandoned one.
                w.abandoned = epoch
            except BaseException as exc:
                if isinstance(exc, asyncio.CancelledError):
                    raise
                self._fail(exc)

    @staticmethod
    def _take(w: _Worker, limit: int) -> tuple[int, list[Polled]]:
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

    async def _process(self, part: _Run, route: Route, rows: list[Polled]) -> None:
        """Decode ``rows`` and apply them through the route; an undecodable record is
        dead-lettered at once, in order, and one waiting for the registry waits in order."""
        decoders = route_decoders(self._conn.serde, route)
        values = await decode_all(rows, decoders.cached)
        if values is not None:  # the common case, a run of good records, in one pass
            await self._apply(part, route, list(zip(rows, values, strict=True)))
            return
        pending: list[Item] = []
        for r in rows:
            try:
                try:
                    pending.append((r, await decode_off_loop(r, *decoders)))
                    continue
                except RegistryError as exc:
                    if pending:  # in order: what came before is handled before the wait
                        await self._apply(part, route, pending)
                        pending = []
                    fetch = functools.partial(asyncio.to_thread, decoders.fetching, r)
                    pending.append((r, await self._policy.wait_for_registry(part, r, fetch, exc)))
                    continue
            except DecodeError as exc:
                error = exc
            if pending:
                await self._apply(part, route, pending)
                pending = []
            self._undecodable.warn(r, error, dlq_name(r[0]))
            await self._dead_letter(r, error, 0)
            part.handled(r[2], 1)
        if pending:
            await self._apply(part, route, pending)

    async def _apply(self, part: _Run, route: Route, items: list[Item]) -> None:
        run = self._timed(part.tp, route.run, route.batch is not None)
        batch, tracing = route.batch is not None, self._conn.tracing
        if (
            tracing is not None
            and tracing.active()
            and not isinstance(route.topic, RequestTopic)  # a responder traces its requests
        ):
            if batch:
                with tracing.process_batch(self.group, [r for r, _ in items]):
                    await self._policy.apply(
                        part, route.name, run, items, all_or_none=True, isolate=route.isolate
                    )
                return
            for item in items:  # a span per record, the child of the span that sent it
                with tracing.process(self.group, item[0]):
                    await self._policy.apply(part, route.name, run, [item], all_or_none=False)
            return
        await self._policy.apply(
            part, route.name, run, items, all_or_none=batch, isolate=route.isolate
        )

    def _timed(self, tp: TopicPartition, run: RunItems, batch: bool) -> RunItems:
        """``run``, timed: the poll thread watches how long handlers hold their records, and
        the metrics take the run's duration."""
        metrics = self._conn.metrics

        async def timed(items: list[Any]) -> Outcome:
            started = time.monotonic()
            with self._lock:
                self._busy[tp] = started
            try:
                return await run(items)
            finally:
                with self._lock:
                    self._busy.pop(tp, None)
                calls = 1 if batch else len(items)
                metrics.handler_run(self.group, tp.topic, time.monotonic() - started, calls)

        return timed

    async def _dead_letter(self, record: Polled, exc: BaseException, attempts: int) -> None:
        await asyncio.wrap_future(
            dead_letter(
                self._conn.producer, Record._make(settled(record)), self.group, exc, attempts
            )
        )
        self.dead_lettered += 1
        self._conn.metrics.dead_lettered(self.group, record[0], record[1])

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
