"""Decoding on an event loop without calling the schema registry on it.

A decoder built with ``lookup=False`` decodes with the writer schemas already fetched and raises
SchemaLookupNeeded for one it has not seen; then the record is decoded again in a thread, with
a decoder that may ask the registry. A slow registry holds up only the partition (or request)
that waits for it. Shared by the consumer loop and request/response (replies).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar

from ferryman.errors import DecodeError, RegistryError
from ferryman.observability.logs import record_fields
from ferryman.records import Polled
from ferryman.runtime.handlers import Route
from ferryman.runtime.serde import Serde
from ferryman.schema.base import SchemaLookupNeeded

R = TypeVar("R")
T = TypeVar("T")


class Decoders(NamedTuple):
    """A route's two decoders: ``cached`` never calls the registry (for the event loop),
    ``fetching`` may (for a thread)."""

    cached: Callable[[Polled], Any]
    fetching: Callable[[Polled], Any]


def route_decoders(serde: Serde, route: Route) -> Decoders:
    """What ``route.run`` gets per record: the value, or the Message (Serde caches the codecs
    and value decoders; nothing is cached here)."""
    topic = route.topic
    if route.input == "value":
        return Decoders(
            serde.value_decoder(topic, lookup=False), serde.value_decoder(topic, lookup=True)
        )
    if route.input == "keyed":
        return Decoders(
            serde.keyed_decoder(topic, lookup=False), serde.keyed_decoder(topic, lookup=True)
        )
    key = route.input == "message"
    return Decoders(
        functools.partial(serde.decode, topic, key=key, lookup=False),
        functools.partial(serde.decode, topic, key=key, lookup=True),
    )


async def decode_off_loop(record: R, cached: Callable[[R], T], fetching: Callable[[R], T]) -> T:
    """``cached(record)``, or, for a writer schema not fetched yet, ``fetching(record)`` in a
    thread; DecodeError and RegistryError pass through."""
    try:
        return cached(record)
    except SchemaLookupNeeded:
        return await asyncio.to_thread(fetching, record)


async def decode_all(rows: Sequence[Polled], decode: Callable[[Polled], Any]) -> list[Any] | None:
    """Every row decoded in one pass (the common case), fetching unseen writer schemas in a
    thread; None if one cannot be decoded (the caller goes record by record)."""
    while True:
        try:
            return [decode(r) for r in rows]
        except SchemaLookupNeeded as need:
            try:  # a writer schema seen for the first time: fetched off the event loop
                await asyncio.to_thread(need.load)
            except (DecodeError, RegistryError):
                return None
        except (DecodeError, RegistryError):
            return None


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

    def warn(self, record: Polled, reason: BaseException, dlq: str) -> None:
        topic, partition, offset = record[:3]
        where = (topic, partition)
        now = self._clock()
        last = self._last.get(where)
        if last is not None and now - last < self._interval:
            self._suppressed[where] = self._suppressed.get(where, 0) + 1
            return
        self._last[where] = now
        suppressed = self._suppressed.pop(where, 0)
        self._log.warning(
            "undecodable record %s[%d]@%d sent to %s: %s%s",
            topic,
            partition,
            offset,
            dlq,
            reason,
            f" ({suppressed} more undecodable record(s) of this partition dead-lettered in the "
            f"last {self._interval:.0f}s without a warning)"
            if suppressed
            else "",
            extra=record_fields(record),
        )
