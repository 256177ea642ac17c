"""Handlers and the routes the consumer loop drives: one route per consumed topic.

A handler takes the value (a list of values with ``batch=``); a handler with a second
parameter also gets the Message (a list of Messages), to see keys, headers and coordinates.
A failed batch is retried whole; once retries are exhausted, every record of it is
dead-lettered (with the batch's exception), since the handler did not say which one failed.
Sync handlers run in a daemon worker thread (runtime/threads.py), a run of records per hop,
so they never block the loop, and one that never returns does not keep the process alive.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ferryman.errors import ConfigError
from ferryman.records import TopicPartition
from ferryman.runtime.threads import in_thread
from ferryman.topics import Topic

Outcome = tuple[int, BaseException | None]
"""How many items, from the front, were handled, and the exception that stopped the rest."""

RunItems = Callable[[list[Any]], Awaitable[Outcome]]

StoredOffsets = Callable[[set[TopicPartition]], Mapping[TopicPartition, int]]
"""Where a route's partitions resume on assignment, when it keeps its offsets itself."""

Input = Literal["value", "message", "message-lazy-key", "keyed"]
"""What a route's ``run`` gets per record: the decoded value alone (the cheapest), a Message
with its key decoded, a Message whose key is decoded only if read, or a ``Keyed`` tuple
(coordinates, key, value: what a mirror applies, no Message built)."""


@dataclass(frozen=True, slots=True)
class Route:
    """How the consumer loop handles one topic: ``batch`` None means one item at a time, in
    which case ``run`` may handle several in a row and stops at the first failure; with a
    batch, ``run`` handles all of them or none; ``isolate`` then applies a run that keeps
    failing record by record, so only the failing one is dead-lettered (a mirror's
    transaction). ``stored_offsets``: the offsets the route keeps (in its database), sought on
    assignment instead of the group's."""

    topic: Topic[Any]
    run: RunItems
    batch: int | None = None
    name: str = ""
    input: Input = "value"
    isolate: bool = False
    stored_offsets: StoredOffsets | None = None


def _wants_message(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(positional) >= 2


def is_async(fn: Callable[..., Any]) -> bool:
    call = getattr(fn, "__call__", None)  # noqa: B004 - async callable objects count too
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


def handler_route(topic: Topic[Any], fn: Callable[..., Any], batch: int | None) -> Route:
    """The route that calls user handler ``fn`` for ``topic``."""
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise ConfigError(f"batch={batch!r} for {topic.name!r}: write a number >= 1, or omit it")
    if not callable(fn):
        raise ConfigError(f"the handler for {topic.name!r} is not callable: decorate a function")
    with_message = _wants_message(fn)
    name = getattr(fn, "__qualname__", repr(fn))
    kind: Input = "message" if with_message else "value"

    def call_args(items: list[Any]) -> tuple[Any, ...]:
        if with_message:
            return ([m.value for m in items], items)
        return (items,)

    if batch is not None:
        if is_async(fn):

            async def run_batch(items: list[Any]) -> Outcome:
                try:
                    await fn(*call_args(items))
                except Exception as exc:
                    return 0, exc
                return len(items), None

        else:

            def call_batch(items: list[Any]) -> Outcome:
                try:
                    fn(*call_args(items))
                except Exception as exc:
                    return 0, exc
                return len(items), None

            async def run_batch(items: list[Any]) -> Outcome:
                return await in_thread(call_batch, items)

        return Route(topic, run_batch, batch, name, kind)

    if is_async(fn):
        if with_message:

            async def run_each(items: list[Any]) -> Outcome:
                for i, m in enumerate(items):
                    try:
                        await fn(m.value, m)
                    except Exception as exc:
                        return i, exc
                return len(items), None

        else:

            async def run_each(items: list[Any]) -> Outcome:
                for i, value in enumerate(items):
                    try:
                        await fn(value)
                    except Exception as exc:
                        return i, exc
                return len(items), None

    else:

        def call_each(items: list[Any]) -> Outcome:
            for i, item in enumerate(items):
                try:
                    if with_message:
                        fn(item.value, item)
                    else:
                        fn(item)
                except Exception as exc:
                    return i, exc
            return len(items), None

        async def run_each(items: list[Any]) -> Outcome:
            return await in_thread(call_each, items)

    return Route(topic, run_each, None, name, kind)
