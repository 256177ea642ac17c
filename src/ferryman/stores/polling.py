"""A table poller that publishes: each poll's rows go into the outbox in the transaction that
moves the watermark, so every row reaches the outbox exactly once and the relay sends it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import Table

from ferryman.errors import ConfigError
from ferryman.stores.database import Database
from ferryman.stores.outbox import Outbox
from ferryman.stores.poller import TablePoller
from ferryman.stores.producing import Encode
from ferryman.stores.source import same_named
from ferryman.topics import EntityTopic, EventTopic, Topic

log = logging.getLogger(__name__)


class TablePublisher:
    """Publishes the changed rows of ``table`` to ``topic`` (an upsert per row of an entity
    topic, an event per row of an event topic), polling every ``every`` seconds."""

    def __init__(
        self,
        poller: TablePoller,
        topic: Topic[Any],
        *,
        every: float,
        to_value: Callable[[Any], Any] | None = None,
    ) -> None:
        if not isinstance(topic, EntityTopic | EventTopic):
            raise ConfigError(f"poll_table() publishes to an entity or event topic, got {topic!r}")
        if isinstance(every, bool) or not isinstance(every, int | float) or not every > 0:
            raise ConfigError(f"poll_table(every={every!r}): write a number of seconds > 0")
        self.poller = poller
        self.topic = topic
        self.every = float(every)
        self.call: Any = "publish" if isinstance(topic, EntityTopic) else "emit"
        table: Table = poller.table
        self.to_value = to_value or same_named(topic, table.name, set(table.c.keys()))

    def poll_once(self, database: Database, outbox: Outbox, encode: Encode) -> int:
        """One poll, in one transaction: rows past the watermark into the outbox, the watermark
        moved past them. Returns how many rows."""
        with database.begin() as conn:
            rows = self.poller.poll(conn)
            records = [
                encode(self.call, self.topic, self.to_value(row), None, None, True) for row in rows
            ]
            outbox.write(conn, *records)
        return len(rows)

    def run(
        self, stop: threading.Event, database: Database, outbox: Outbox, encode: Encode
    ) -> None:
        """Poll until ``stop`` is set: at once again after a full poll, else every ``every``
        seconds; errors are logged and retried at the next poll."""
        while not stop.is_set():
            try:
                full = self.poll_once(database, outbox, encode) >= self.poller.limit
            except Exception:
                log.exception(
                    "table poller %s failed; retrying in %.1fs", self.poller.name, self.every
                )
                full = False
            if not full:
                stop.wait(self.every)
