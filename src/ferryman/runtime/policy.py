"""The failure policy of a consumer loop: retry with back-off, then dead-letter or stop.

A route applies a run of records (``Route.run``: a user handler, or a store's transaction) and
says how many, from the front, it handled and what stopped the rest. The policy decides what
happens to the failing record (or run): it is retried ``retries`` times with back-off (not a
``RecordRejected``, which fails the same way every time), then dead-lettered, or the service is
stopped (``on_error='stop'``). An all-or-none run (a batch, a transaction) that keeps failing
is dead-lettered whole, or, with ``isolate=True``, applied again record by record so that only
the record that fails is dead-lettered and the others are applied (what a mirror wants).

The policy knows nothing of threads, brokers or partitions' workers: the loop gives it a
``Partition`` (back-off and done-marking of one partition) and the ``dead_letter`` and ``stop``
actions. Subclasses may override ``retryable`` and ``give_up``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ferryman.config import ServiceConfig
from ferryman.errors import HandlerError, RecordRejected, RegistryError
from ferryman.observability.logs import record_fields
from ferryman.records import Polled
from ferryman.runtime.handlers import RunItems
from ferryman.topics import dlq_name

log = logging.getLogger("ferryman.runtime")

Item = tuple[Polled, Any]
"""A record (as its row: Record is one too) and what the route's ``run`` gets for it."""

DeadLetter = Callable[[Polled, BaseException, int], Awaitable[None]]
"""Sends a record to its DLQ with the exception and the attempts made (0: undecodable)."""


class Abandoned(Exception):
    """The partition was revoked or the service is stopping: leave the record uncommitted."""


class Partition(Protocol):
    """What the policy needs of the partition it works on."""

    async def back_off(self, attempt: int) -> None:
        """Wait before retry ``attempt``; raise Abandoned if the partition is revoked."""

    def handled(self, offset: int, count: int) -> None:
        """``count`` records, up to ``offset``, are done: their offsets may be committed."""


class FailurePolicy:
    """Applies runs of records through a route, retrying, dead-lettering or stopping."""

    def __init__(
        self,
        config: ServiceConfig,
        group: str,
        dead_letter: DeadLetter,
        stop: Callable[[BaseException], None],
    ) -> None:
        self._config = config
        self._group = group
        self._dead_letter = dead_letter
        self._stop = stop
        self.registry_retries = 0
        """Waits for the schema registry so far (ServiceStats)."""

    def retryable(self, exc: BaseException) -> bool:
        """Whether another attempt may succeed: a rejected record fails the same way again."""
        return not isinstance(exc, RecordRejected)

    async def apply(
        self,
        part: Partition,
        name: str,
        run: RunItems,
        items: list[Item],
        *,
        all_or_none: bool,
        isolate: bool = False,
    ) -> None:
        """Apply ``items`` in order through ``run``; every one ends handled or given up on.
        ``all_or_none``: ``run`` handles all of them or none (a batch, a transaction)."""
        while items:
            handled, exc = await run([v for _, v in items])
            if handled:
                part.handled(items[handled - 1][0][2], handled)
                items = items[handled:]
            if exc is None:
                continue
            failing = items if all_or_none else items[:1]
            attempts = 1
            while exc is not None and attempts <= self._config.retries and self.retryable(exc):
                await part.back_off(attempts)
                _, exc = await run([v for _, v in failing])
                attempts += 1
            items = items[len(failing) :]
            if exc is None:
                part.handled(failing[-1][0][2], len(failing))
            elif isolate and len(failing) > 1:
                for one in failing:  # each in its own run: only the failing one is given up on
                    await self.apply(part, name, run, [one], all_or_none=True)
            else:
                await self.give_up(name, [r for r, _ in failing], exc, attempts)
                part.handled(failing[-1][0][2], len(failing))

    async def give_up(
        self, name: str, records: list[Polled], exc: BaseException, attempts: int
    ) -> None:
        """Retries are spent: dead-letter ``records``, or stop the service (raising Abandoned)."""
        topic, partition, offset = records[0][:3]
        if self._config.on_error == "stop" and not isinstance(exc, RecordRejected):
            error = HandlerError(
                f"handler {name} failed on {topic}[{partition}] offset {offset} after "
                f"{attempts} attempt(s): {type(exc).__name__}: {exc}. The record is not "
                "committed; fix the cause and restart, or use "
                "ServiceConfig(on_error='dead-letter') to park such records in "
                f"{dlq_name(topic)}"
            )
            error.__cause__ = exc
            self._stop(error)
            raise Abandoned
        log.error(
            "group %s: %s failed %d time(s) on %s[%d]@%d, sending to %s: %r",
            self._group,
            name,
            attempts,
            topic,
            partition,
            offset,
            dlq_name(topic),
            exc,
            extra=record_fields(records[0], self._group),
        )
        for r in records:
            await self._dead_letter(r, exc, attempts)

    async def wait_for_registry(
        self,
        part: Partition,
        record: Polled,
        fetch: Callable[[], Awaitable[Any]],
        exc: RegistryError,
    ) -> Any:
        """``fetch()`` (the record decoded) once the registry answers: an outage is no fault of
        the record, so it is retried with back-off, forever or ``registry_retries`` times."""
        topic, partition, offset = record[:3]
        limit = self._config.registry_retries
        attempt = 0
        while True:
            attempt += 1
            if limit is not None and attempt > limit:
                error = RegistryError(
                    f"group {self._group}: cannot decode {topic}[{partition}] offset {offset}, "
                    f"the schema registry failed {attempt} time(s): {exc}. The record is not "
                    "committed; make the registry reachable and restart (or raise "
                    "ServiceConfig.registry_retries, None waiting forever)"
                )
                error.__cause__ = exc
                self._stop(error)
                raise Abandoned
            if attempt == 1 or attempt % 10 == 0:
                log.warning(
                    "group %s: waiting for the schema registry to decode %s[%d]@%d (attempt %d): %s",
                    self._group,
                    topic,
                    partition,
                    offset,
                    attempt,
                    exc,
                    extra=record_fields(record, self._group),
                )
            self.registry_retries += 1
            await part.back_off(attempt)
            try:
                return await fetch()
            except RegistryError as again:
                exc = again
