"""The requester: sends requests and routes their replies back to the callers waiting on them.

How replies find their requester: every requester instance (one per Service object) picks one
partition of ``<topic>.reply`` when it first sends on ``topic``, reads it with a standalone
``assign`` starting at the partition's end, and names it in ``ferryman.reply-to``
(``<topic>.reply:<partition>``) together with its instance id in ``ferryman.requester``. The
responder echoes both and the correlation id, and sends the reply to that partition. Several
instances may pick the same partition: each keeps only the replies carrying its own instance
id, so sharing costs reading, never correctness. No coordination, no group rebalances on the
reply path, and a requester reads ``1/reply_partitions`` of the reply traffic on average.

A reply whose correlation id is no longer pending (it timed out, or a responder sent it twice
after a crash) is a late reply: dropped and counted in ``Requester.late_replies``.

Receipt acknowledgement: with ``ack=True`` the responder sends an ``ack`` record to the same
reply partition before it runs the handler, so ``await pending.accepted`` resolves before
``await pending``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import logging
import random
import threading
import time
from collections.abc import Generator
from typing import Any, Generic, NamedTuple, TypeVar

from ferryman.broker.base import Consumer
from ferryman.errors import ConfigError, RemoteError, RequestTimeout
from ferryman.records import Record, TopicPartition
from ferryman.runtime.connections import Connections
from ferryman.runtime.decoding import decode_off_loop
from ferryman.runtime.delivery import Delivery
from ferryman.runtime.headers import (
    ACK_REQUESTED,
    CORRELATION_ID,
    ERROR_MESSAGE,
    ERROR_TYPE,
    KIND_ACK,
    KIND_ERROR,
    MESSAGE_ID,
    REPLY_KIND,
    REPLY_TO,
    REQUESTER,
    SOURCE,
    new_id,
    new_id_bytes,
)
from ferryman.topics import RequestTopic

R = TypeVar("R")
T = TypeVar("T")
log = logging.getLogger("ferryman.rpc")

SWEEP_INTERVAL = 1.0
"""Seconds between sweeps of requests whose deadline passed."""


class PendingReply(Generic[R]):
    """A sent request: ``await p`` or ``p.result()`` gives the reply; ``p.accepted`` the receipt.

    Both raise RequestTimeout once the request's deadline passed; the reply raises RemoteError
    when the responder raised.
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
        self._ack: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._record: concurrent.futures.Future[Record] = concurrent.futures.Future()
        self.accepted: Delivery[None] = Delivery(
            self._ack,
            f"the receipt of request {correlation_id} on {topic.name!r}",
            deadline=self.deadline,
            timed_out=lambda: self._timed_out("receipt ack"),
            log_unretrieved=False,  # the reply fails too, and reports it
        )
        """The responder's receipt: ``await p.accepted`` or ``p.accepted.result()`` (it is
        only sent for ``ack=True`` requests; the reply resolves it too)."""
        self._reply: Delivery[Record] = Delivery(
            self._record,
            f"request {correlation_id} on {topic.name!r}",
            deadline=self.deadline,
            timed_out=lambda: self._timed_out("reply"),
        )

    def __repr__(self) -> str:
        return f"<PendingReply {self.correlation_id} on {self.topic.name!r}>"

    def _timed_out(self, what: str) -> RequestTimeout:
        self._requester.forget(self.correlation_id)
        if what == "reply":
            self._requester.metrics.request_timed_out(self.topic.name)
        return RequestTimeout(
            f"no {what} to request {self.correlation_id} on {self.topic.name!r} within "
            f"{self.timeout}s: check that a service with @responder({self.topic.name!r}) is "
            "running and keeping up (its group lag), or pass a longer timeout"
        )

    def accept(self) -> None:
        """The responder's receipt arrived."""
        _settle(self._ack, None)

    def answer(self, record: Record) -> None:
        """The reply arrived (it also means the request was accepted)."""
        _settle(self._ack, None)
        _settle(self._record, record)

    def fail(self, exc: BaseException) -> None:
        """The request was not sent, or will not be answered: every wait on it raises ``exc``."""
        self._requester.forget(self.correlation_id)
        for future in (self._ack, self._record):
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                future.set_exception(exc)

    def done(self) -> bool:
        """Whether the reply (or the request's failure) arrived."""
        return self._record.done()

    def result(self, timeout: float | None = None) -> R:
        """Block until the reply arrives and return it (the request's deadline still holds)."""
        record = self._reply.result(timeout)
        return self._requester.decode_reply(self.topic, record)

    def __await__(self) -> Generator[Any, None, R]:
        return self._wait().__await__()

    async def _wait(self) -> R:
        record = await self._reply
        decode = functools.partial(self._requester.decode_reply, self.topic)
        return await decode_off_loop(record, functools.partial(decode, lookup=False), decode)


def _settle(future: concurrent.futures.Future[T], value: T) -> None:
    # A reply and a failure (the service stopping) can race: the first one wins.
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        future.set_result(value)


class _Unsent(NamedTuple):
    """A request encoded and waiting for its reply partition to be set up."""

    pending: PendingReply[Any]
    payload: bytes
    key: bytes | None
    ack: bool
    trace: tuple[tuple[str, bytes], ...] = ()


class Requester:
    """Sends requests for one service instance and routes replies back to their callers."""

    def __init__(self, connections: Connections, source: str, instance_id: str) -> None:
        self._conn = connections
        self._source = source.encode()
        self.instance_id = instance_id
        self._pending: dict[str, PendingReply[Any]] = {}
        self._partitions: dict[str, TopicPartition] = {}
        # Reply topics whose first requests were all sent: later ones go straight out. Until
        # then requests queue here, behind the setup, so they leave in the order they were made.
        self._open: dict[str, TopicPartition] = {}
        self._queued: dict[str, list[_Unsent]] = {}
        self._wanted: list[tuple[TopicPartition, threading.Event]] = []
        self._lock = threading.Lock()
        self._prepare_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._error: BaseException | None = None
        self.late_replies = 0
        self.metrics = connections.metrics

    def reply_partition(self, topic: RequestTopic[Any, Any]) -> TopicPartition:
        """The reply partition this instance reads for ``topic``, set up on first use (blocks)."""
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

    def request(
        self, topic: RequestTopic[Any, R], value: Any, timeout: float, ack: bool
    ) -> PendingReply[R]:
        """Send a request without blocking; a value that does not fit raises here, at once.

        The first request on a topic sets up its reply partition in a thread and sends from
        there, so an event loop calling this is never blocked by it."""
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ConfigError(f"timeout={timeout!r}: pass a number of seconds > 0")
        serde = self._conn.serde
        payload = serde.encode_value(topic, value)
        key = serde.encode_key(topic, topic.key_of(value))
        pending: PendingReply[R] = PendingReply(self, topic, new_id(), timeout)
        tracing = self._conn.tracing
        trace = () if tracing is None else tracing.send_headers(topic.name)
        unsent = _Unsent(pending, payload, key, ack, trace)
        with self._lock:
            self._pending[pending.correlation_id] = pending
            tp = self._open.get(topic.reply_topic)
            if tp is None:
                queue = self._queued.get(topic.reply_topic)
                if queue is not None:  # a setup is under way: it sends this one too
                    queue.append(unsent)
                    return pending
                self._queued[topic.reply_topic] = [unsent]
        if tp is not None:
            try:
                self._send(unsent, tp)
            except BaseException:
                self.forget(pending.correlation_id)
                raise
        else:
            threading.Thread(
                target=self._set_up_and_send,
                args=(topic,),
                name="ferryman-reply-setup",
                daemon=True,
            ).start()
        return pending

    def _set_up_and_send(self, topic: RequestTopic[Any, Any]) -> None:
        """Set up ``topic``'s reply partition, then send what queued meanwhile, in order."""
        try:
            tp = self.reply_partition(topic)
        except BaseException as exc:
            with self._lock:
                unsent = self._queued.pop(topic.reply_topic, [])
            for u in unsent:
                u.pending.fail(exc)
            return
        while True:
            with self._lock:
                unsent = self._queued[topic.reply_topic]
                if not unsent:
                    del self._queued[topic.reply_topic]
                    self._open[topic.reply_topic] = tp
                    return
                self._queued[topic.reply_topic] = []
            for u in unsent:
                try:
                    self._send(u, tp)
                except Exception as exc:  # e.g. the producer closed: this request, not the rest
                    u.pending.fail(exc)

    def _send(self, unsent: _Unsent, tp: TopicPartition) -> None:
        pending = unsent.pending
        headers = [
            (MESSAGE_ID, new_id_bytes()),
            (SOURCE, self._source),
            (CORRELATION_ID, pending.correlation_id.encode()),
            (REPLY_TO, f"{tp.topic}:{tp.partition}".encode()),
            (REQUESTER, self.instance_id.encode()),
        ]
        if unsent.ack:
            headers.append((ACK_REQUESTED, b"1"))
        headers.extend(unsent.trace)
        sent = self._conn.rpc_producer.send(
            pending.topic.name,
            unsent.payload,
            key=unsent.key,
            headers=tuple(headers),
            timestamp=int(time.time() * 1000),
        )

        def check(future: concurrent.futures.Future[Any]) -> None:
            exc = future.exception()
            if exc is not None:
                pending.fail(exc)

        sent.add_done_callback(check)

    def forget(self, correlation_id: str) -> None:
        """Stop waiting for the reply to ``correlation_id`` (it timed out or was never sent)."""
        with self._lock:
            self._pending.pop(correlation_id, None)

    def decode_reply(
        self, topic: RequestTopic[Any, R], record: Record, *, lookup: bool = True
    ) -> R:
        """The reply ``record`` carries; RemoteError when it says the responder raised."""
        if record.header(REPLY_KIND) == KIND_ERROR:
            raise RemoteError(
                (record.header(ERROR_TYPE) or b"Exception").decode(errors="replace"),
                (record.header(ERROR_MESSAGE) or b"").decode(errors="replace"),
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
        requester = record.header(REQUESTER)
        if requester is None or requester.decode() != self.instance_id:
            return
        raw = record.header(CORRELATION_ID)
        correlation_id = raw.decode() if raw else ""
        kind = record.header(REPLY_KIND)
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
                self.metrics.late_reply(record.topic.removesuffix(".reply"))
            return
        if kind == KIND_ACK:
            pending.accept()
        else:
            took = time.monotonic() - pending.deadline + pending.timeout
            self.metrics.request_answered(pending.topic.name, took, kind == KIND_ERROR)
            pending.answer(record)

    def close(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            pending, self._pending = self._pending, {}
        for p in pending.values():
            p.fail(
                RequestTimeout(
                    f"the service stopped before request {p.correlation_id} on "
                    f"{p.topic.name!r} was answered; stop services after their requests complete"
                )
            )
