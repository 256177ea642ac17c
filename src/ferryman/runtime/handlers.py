"""Handlers and the routes the consumer loop drives: one route per consumed topic.

A handler takes the value (a list of values with ``batch=``); a handler with a second
parameter also gets the Message (a list of Messages), to see keys, headers and coordinates.
Sync handlers run in a worker thread, a run of records per hop, so they never block the loop.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ferryman.errors import ConfigError
from ferryman.runtime.messages import Message
from ferryman.topics import Topic

Outcome = tuple[int, BaseException | None]
"""How many messages, from the front, were handled, and the exception that stopped the rest."""

RunMessages = Callable[[list[Message[Any]]], Awaitable[Outcome]]


@dataclass(frozen=True, slots=True)
class Route:
    """How the consumer loop handles one topic: ``batch`` None means one message at a time,
    in which case ``run`` may handle several in a row and stops at the first failure; with a
    batch, ``run`` handles all of them or none."""

    topic: Topic[Any]
    run: RunMessages
    batch: int | None = None
    name: str = ""
    needs_key: bool = True
    """False when ``run`` never looks at keys, which are then not decoded."""


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


def _is_async(fn: Callable[..., Any]) -> bool:
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

    def args(msgs: list[Message[Any]]) -> tuple[Any, ...]:
        values = [m.value for m in msgs]
        return (values, msgs) if with_message else (values,)

    def one(m: Message[Any]) -> tuple[Any, ...]:
        return (m.value, m) if with_message else (m.value,)

    if batch is not None:
        if _is_async(fn):

            async def run_batch(msgs: list[Message[Any]]) -> Outcome:
                try:
                    await fn(*args(msgs))
                except Exception as exc:
                    return 0, exc
                return len(msgs), None

        else:

            def call_batch(msgs: list[Message[Any]]) -> Outcome:
                try:
                    fn(*args(msgs))
                except Exception as exc:
                    return 0, exc
                return len(msgs), None

            async def run_batch(msgs: list[Message[Any]]) -> Outcome:
                return await asyncio.to_thread(call_batch, msgs)

        return Route(topic, run_batch, batch, name, with_message)

    if _is_async(fn) and not with_message:

        async def run_each(msgs: list[Message[Any]]) -> Outcome:
            for i, m in enumerate(msgs):
                try:
                    await fn(m.value)
                except Exception as exc:
                    return i, exc
            return len(msgs), None

    elif _is_async(fn):

        async def run_each(msgs: list[Message[Any]]) -> Outcome:
            for i, m in enumerate(msgs):
                try:
                    await fn(m.value, m)
                except Exception as exc:
                    return i, exc
            return len(msgs), None

    else:

        def call_each(msgs: list[Message[Any]]) -> Outcome:
            for i, m in enumerate(msgs):
                try:
                    fn(*one(m))
                except Exception as exc:
                    return i, exc
            return len(msgs), None

        async def run_each(msgs: list[Message[Any]]) -> Outcome:
            return await asyncio.to_thread(call_each, msgs)

    return Route(topic, run_each, None, name, with_message)
