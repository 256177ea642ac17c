"""The responder: the route that answers a request topic's requests, and where its replies go.

It sends each reply to the partition of ``<topic>.reply`` named in the request's
``ferryman.reply-to``, echoing the correlation id and requester id (see rpc/requester.py for how
replies find their requester). Unkeyed requests of one partition are answered concurrently (a
run of up to 64 at a time) and committed in order once their replies are durable; requests of a
topic with a ``partition_key`` are answered one after the other, in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from ferryman.errors import RecordRejected
from ferryman.observability.logs import record_fields
from ferryman.runtime.connections import Connections
from ferryman.runtime.dead_letters import exception_type
from ferryman.runtime.handlers import Outcome, Route, is_async
from ferryman.runtime.headers import (
    ACK_REQUESTED,
    CORRELATION_ID,
    ERROR_MESSAGE,
    ERROR_TYPE,
    KIND_ACK,
    KIND_ERROR,
    KIND_REPLY,
    MESSAGE_ID,
    REPLY_KIND,
    REPLY_TO,
    REQUESTER,
    SOURCE,
    new_id_bytes,
)
from ferryman.runtime.message import Message
from ferryman.runtime.threads import in_thread
from ferryman.topics import RequestTopic

log = logging.getLogger("ferryman.rpc")


def row_of(m: Message[Any]) -> tuple[Any, ...]:
    """The coordinates and headers of ``m`` as a Row (its value left out)."""
    return (m.topic, m.partition, m.offset, m.raw_key, None, m.headers, m.timestamp)


def responder_route(
    topic: RequestTopic[Any, Any], fn: Callable[..., Any], connections: Connections, source: str
) -> Route:
    """The route that answers ``topic``'s requests with ``fn``'s return value, or its error."""
    asynchronous = is_async(fn)
    name = getattr(fn, "__qualname__", repr(fn))
    source_header = source.encode()

    async def call(request: Any) -> Any:
        if asynchronous:
            return await fn(request)
        return await in_thread(fn, request)

    def reply_partition(m: Message[Any]) -> int | None:
        """The partition of ``<topic>.reply`` that ``m`` asks replies to go to (None: one-way).

        Only that topic's partitions: a reply-to naming any other topic would make the
        responder write into it on the requester's behalf (a confused deputy)."""
        raw = m.header(REPLY_TO)
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
            (MESSAGE_ID, new_id_bytes()),
            (SOURCE, source_header),
            (CORRELATION_ID, m.header(CORRELATION_ID) or b""),
            (REQUESTER, m.header(REQUESTER) or b""),
            (REPLY_KIND, kind),
            *extra,
            *(() if connections.tracing is None else connections.tracing.current_headers()),
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
        tracing = connections.tracing
        if tracing is None:
            return await respond(m)
        with tracing.process(source, row_of(m)):
            return await respond(m)

    async def respond(m: Message[Any]) -> None:
        partition = reply_partition(m)
        if partition is not None and m.header(ACK_REQUESTED) == b"1":
            await send(m, partition, KIND_ACK, None, [])
        try:
            reply = await call(m.value)
            payload = connections.serde.encode_reply(topic, reply)
        except Exception as exc:
            log.info(
                "responder %s raised %r; sending it back as an error reply",
                name,
                exc,
                exc_info=exc,
                extra={**record_fields(row_of(m)), "service": source},
            )
            error = [
                (ERROR_TYPE, exception_type(exc).encode()),
                (ERROR_MESSAGE, str(exc).encode(errors="backslashreplace")),
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
