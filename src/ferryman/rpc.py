"""Request/response over topics: the requester (client) and the responder route.

How replies find their requester: every requester instance (one per Service object) picks one
partition of ``<topic>.reply`` when it first sends on ``topic``, reads it with a standalone
``assign`` starting at the partition's end, and names it in ``ferryman.reply-to``
(``<topic>.reply:<partition>``) together with its instance id in ``ferryman.requester``. The
responder echoes both and the correlation id, and sends the reply to that partition. Several
instances may pick the same partition: each keeps only the replies carrying its own instance
id, so sharing costs reading, never correctness. No coordination, no group rebalances on the
reply path, and a requester reads ``1/reply_partitions`` of the reply traffic on average.

A responder answers unkeyed requests of one partition concurrently (a run of up to 64 at a
time) and commits them in order once their replies are durable; requests of a topic with a
``partition_key`` are answered one after the other, in order.

A reply whose correlation id is no longer pending (it timed out, or a responder sent it twice
after a crash) is a late reply: dropped and counted in ``Requester.late_replies``.

Receipt acknowledgement: ``request(..., ack=True)`` returns a PendingReply at once; the
responder sends an ``ack`` record to the same reply partition before it runs the handler, so
``await pending.accepted()`` resolves before ``await pending.reply()``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ferryman.broker.base import Consumer
from ferryman.errors import RecordRejected, RemoteError, RequestTimeout
from ferryman.records import Record, TopicPartition
from ferryman.runtime import messages as h
from ferryman.runtime.connections import Connections
from ferryman.runtime.dead_letters import exception_type
from ferryman.runtime.decoding import decode_off_loop
from ferryman.runtime.handlers import Outcome, Route, _is_async
from ferryman.runtime.messages import Message
from ferryman.runtime.threads import in_thread
from ferryman.topics import RequestTopic

R = TypeVar("R")
log = logging.getLogger("ferryman.rpc")

KIND_REPLY = b"reply"
KIND_ERROR = b"error"
KIND_ACK = b"ack"
SWEEP_INTERVAL = 1.0
"""Seconds between sweeps of requests whose deadline passed."""


class PendingReply(Generic[R]):
    """A sent request: ``accepted()`` resolves on the receipt ack, ``reply()`` on the reply.

    Both raise RequestTimeout once the request's deadline passed; ``reply()`` raises
    RemoteError when the responder raised. Blocking forms: ``wait_accepted()``, ``result()``.
    """

    def __init__(
        self,
        requester: Requester,
        topic: RequestTopic[Any, R],
        correlation_id: str,
        timeout: float,
    ) -> None:
        self._requester = requester
        self.topic = topic
        self.correlation_id = correlation_id
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.ack: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.record: concurrent.futures.Future[Record] = concurrent.futures.Future()

    def _timed_out(self, what: str) -> RequestTimeout:
        self._requester._forget(self.correlation_id)
        return RequestTimeout(
            f"no {what} to request {self.correlation_id} on {self.topic.name!r} within "
            f"{self.timeout}s: check that a service with @responder({self.topic.name!r}) is "
            "running and keeping up (its group lag), or pass a longer timeout"
        )

    def _remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    async def accepted(self) -> None:
        """Wait for the responder's receipt ack (only sent for ``ack=True`` requests)."""
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(self.ack)), self._remaining())
        except TimeoutError:
            raise self._timed_out("receipt ack") from None

    async def reply(self) -> R:
        """Wait for the reply and decode it."""
        try:
            record = await asyncio.wait_for(
                asyncio.shield(asyncio.wrap_future(self.record)), self._remaining()
            )
        except TimeoutError:
            raise self._timed_out("reply") from None
        value_of = functools.partial(self._requester._value_of, self.topic)
        return await decode_off_loop(record, functools.partial(value_of, lookup=False), value_of)

    def wait_accepted(self) -> None:
        """Blocking form of ``accepted()``."""
        try:
            self.ack.result(self._remaining())
        except concurrent.futures.TimeoutError:
            raise self._timed_out("receipt ack") from None

    def result(self) -> R:
        """Blocking form of ``reply()``."""
        try:
            record = self.record.result(self._remaining())
        except concurrent.futures.TimeoutError:
            raise self._timed_out("reply") from None
        return self._requester._value_of(self.topic, record)

    def __await__(self) -> Any:
        return self.reply().__await__()


class Requester:
    """Sends requests for one service instance and routes replies back to their callers."""

    def __init__(self, connections: Connections, source: str, instance_id: str) -> None:
        self._conn = connections
        self._source = source.encode()
        self.instance_id = instance_id
        self._pending: dict[str, PendingReply[Any]] = {}
        self._partitions: dict[str, TopicPartition] = {}
        self._wanted: list[tuple[TopicPartition, threading.Event]] = []
        self._lock = threading.Lock()
        self._prepare_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._error: BaseException | None = None
        self.late_replies = 0

    def reply_partition(self, topic: RequestTopic[Any, Any]) -> TopicPartition:
        """The reply partition this instance reads for ``topic``, set up on first use."""
        tp = self._partitions.get(topic.reply_topic)
        if tp is not None:
            return tp
        with self._prepare_lock:
            tp = self._partitions.get(topic.reply_topic)
            if tp is not None:
                return tp
            self._conn.ensure_topics(topic.specs())
            tp = TopicPartition(topic.reply_topic, random.randrange(topic.reply_partitions))
            ready = threading.Event()
            with self._lock:
                self._wanted.append((tp, ready))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._read_replies, name="ferryman-replies", daemon=True
                )
                self._thread.start()
            while not ready.wait(0.05):
                if self._error is not None or not self._thread.is_alive():
                    raise RuntimeError(
                        f"the reply reader stopped: {self._error!r}"
                    ) from self._error
            self._partitions[topic.reply_topic] = tp
            return tp

    def send(
        self, topic: RequestTopic[Any, R], value: Any, timeout: float, ack: bool
    ) -> tuple[PendingReply[R], concurrent.futures.Future[Any]]:
        """Queue a request; returns its PendingReply and the produce future."""
        if timeout <= 0:
            raise ValueError(f"timeout={timeout!r}: pass a number of seconds > 0")
        tp = self.reply_partition(topic)
        serde = self._conn.serde
        payload = serde.encode_value(topic, value)
        correlation_id = h.new_id()
        pending: PendingReply[R] = PendingReply(self, topic, correlation_id, timeout)
        headers = [
            (h.MESSAGE_ID, h.new_id().encode()),
            (h.SOURCE, self._source),
            (h.CORRELATION_ID, correlation_id.encode()),
            (h.REPLY_TO, f"{tp.topic}:{tp.partition}".encode()),
            (h.REQUESTER, self.instance_id.encode()),
        ]
        if ack:
            headers.append((h.ACK_REQUESTED, b"1"))
        with self._lock:
            self._pending[correlation_id] = pending
        future = self._conn.rpc_producer.send(
            topic.name,
            payload,
            key=serde.encode_key(topic, topic.key_of(value)),
            headers=tuple(headers),
            timestamp=int(time.time() * 1000),
        )
        return pending, future

    def _forget(self, correlation_id: str) -> None:
        with self._lock:
            self._pending.pop(correlation_id, None)

    def _value_of(self, topic: RequestTopic[Any, R], record: Record, *, lookup: bool = True) -> R:
        if record.header(h.REPLY_KIND) == KIND_ERROR:
            raise RemoteError(
                (record.header(h.ERROR_TYPE) or b"Exception").decode(errors="replace"),
                (record.header(h.ERROR_MESSAGE) or b"").decode(errors="replace"),
                topic.name,
            )
        value: R = self._conn.serde.decode_reply(topic, record, lookup=lookup)
        return value

    def _read_replies(self) -> None:
        consumer: Consumer | None = None
        try:
            consumer = self._conn.broker.consumer(None, auto_offset_reset="latest")
            owned: list[TopicPartition] = []
            next_sweep = time.monotonic() + SWEEP_INTERVAL
            while not self._stopping.is_set():
                if self._wanted:
                    with self._lock:
                        wanted, self._wanted = self._wanted, []
                    owned.extend(tp for tp, _ in wanted)
                    consumer.assign(owned)
                    admin = self._conn.admin
                    for tp, ready in wanted:
                        # Start at the end, pinned now: every reply to a request sent after this
                        # is read, whatever the backend's lazy offset reset would do.
                        consumer.seek(tp, admin.offsets(tp.topic)[tp.partition].latest)
                        ready.set()
                for record in consumer.poll(0.1, 500):
                    self._route(record)
                if time.monotonic() >= next_sweep:
                    self._sweep()
                    next_sweep = time.monotonic() + SWEEP_INTERVAL
        except BaseException as exc:
            self._error = exc
            log.exception("reply reader failed")
        finally:
            if consumer is not None:
                consumer.close()

    def _sweep(self) -> None:
        """Forget requests past their deadline that nobody awaited (they would stay forever)."""
        now = time.monotonic()
        with self._lock:
            expired = [cid for cid, p in self._pending.items() if now > p.deadline]
            for cid in expired:
                del self._pending[cid]

    def _route(self, record: Record) -> None:
        requester = record.header(h.REQUESTER)
        if requester is None or requester.decode() != self.instance_id:
            return
        raw = record.header(h.CORRELATION_ID)
        correlation_id = raw.decode() if raw else ""
        kind = record.header(h.REPLY_KIND)
        with self._lock:
            pending = self._pending.get(correlation_id)
            if pending is not None and time.monotonic() > pending.deadline:
                # Past its deadline the request is over, whether or not anyone still awaits it.
                del self._pending[correlation_id]
                pending = None
            elif pending is not None and kind != KIND_ACK:
                del self._pending[correlation_id]
        if pending is None:
            if kind != KIND_ACK:
                self.late_replies += 1
            return
        if kind == KIND_ACK:
            if not pending.ack.done():
                pending.ack.set_result(None)
            return
        if not pending.ack.done():
            pending.ack.set_result(None)
        if not pending.record.done():
            pending.record.set_result(record)

    def close(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            pending, self._pending = self._pending, {}
        for p in pending.values():
            for fut in (p.ack, p.record):
                if not fut.done():
                    fut.set_exception(
                        RequestTimeout(
                            f"the service stopped before request {p.correlation_id} on "
                            f"{p.topic.name!r} was answered; stop services after their "
                            "requests complete"
                        )
                    )


def responder_route(
    topic: RequestTopic[Any, Any], fn: Callable[..., Any], connections: Connections, source: str
) -> Route:
    """The route that answers ``topic``'s requests with ``fn``'s return value, or its error."""
    is_async = _is_async(fn)
    name = getattr(fn, "__qualname__", repr(fn))
    source_header = source.encode()

    async def call(request: Any) -> Any:
        if is_async:
            return await fn(request)
        return await in_thread(fn, request)

    def reply_partition(m: Message[Any]) -> int | None:
        """The partition of ``<topic>.reply`` that ``m`` asks replies to go to (None: one-way).

        Only that topic's partitions: a reply-to naming any other topic would make the
        responder write into it on the requester's behalf (a confused deputy)."""
        raw = m.header(h.REPLY_TO)
        if raw is None:
            return None
        reply_topic, _, partition = raw.decode(errors="replace").rpartition(":")
        if (
            reply_topic == topic.reply_topic
            and partition.isascii()
            and partition.isdigit()
            and int(partition) < topic.reply_partitions
        ):
            return int(partition)
        raise RecordRejected(
            f"request {m.topic}[{m.partition}]@{m.offset} asks for its reply to go to "
            f"{raw.decode(errors='backslashreplace')!r}; a responder of {topic.name!r} replies "
            f"only to {topic.reply_topic}:<partition> with a partition from 0 to "
            f"{topic.reply_partitions - 1}: send requests with Service.request()"
        )

    async def send(
        m: Message[Any], partition: int | None, kind: bytes, payload: bytes | None, extra: list[Any]
    ) -> None:
        if partition is None:
            return  # a one-way request: nobody waits for a reply
        headers = (
            (h.MESSAGE_ID, h.new_id().encode()),
            (h.SOURCE, source_header),
            (h.CORRELATION_ID, m.header(h.CORRELATION_ID) or b""),
            (h.REQUESTER, m.header(h.REQUESTER) or b""),
            (h.REPLY_KIND, kind),
            *extra,
        )
        future = connections.rpc_producer.send(
            topic.reply_topic,
            payload,
            headers=headers,
            partition=partition,
            timestamp=int(time.time() * 1000),
        )
        await asyncio.wrap_future(future)

    async def answer(m: Message[Any]) -> None:
        partition = reply_partition(m)
        if partition is not None and m.header(h.ACK_REQUESTED) == b"1":
            await send(m, partition, KIND_ACK, None, [])
        try:
            reply = await call(m.value)
            payload = connections.serde.encode_reply(topic, reply)
        except Exception as exc:
            log.info(
                "responder %s raised %r; sending it back as an error reply", name, exc, exc_info=exc
            )
            error = [
                (h.ERROR_TYPE, exception_type(exc).encode()),
                (h.ERROR_MESSAGE, str(exc).encode(errors="backslashreplace")),
            ]
            await send(m, partition, KIND_ERROR, None, error)
            return
        await send(m, partition, KIND_REPLY, payload, [])

    async def run(msgs: list[Message[Any]]) -> Outcome:
        if topic.partition_key is not None:  # keyed requests are answered in order
            for i, m in enumerate(msgs):
                try:
                    await answer(m)
                except Exception as exc:  # a reply not sent: retry, then dead-letter
                    return i, exc
            return len(msgs), None
        # Unkeyed requests are independent: a run of them is answered concurrently, so handlers
        # that wait on I/O and the replies' acknowledgements overlap. Offsets are still
        # committed in order, once every reply of the run is durable. A rejected request ends
        # the run before it is answered, so none after it is answered twice.
        rejected: RecordRejected | None = None
        for i, m in enumerate(msgs):
            try:
                reply_partition(m)
            except RecordRejected as exc:
                msgs, rejected = msgs[:i], exc
                break
        results = await asyncio.gather(*(answer(m) for m in msgs), return_exceptions=True)
        for i, result in enumerate(results):
            if isinstance(result, asyncio.CancelledError):
                raise result
            if isinstance(result, Exception):  # a reply not sent: retry, then dead-letter
                return i, result
        return len(msgs), rejected

    return Route(topic, run, None, name, "message-lazy-key")
