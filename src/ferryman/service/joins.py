"""A service's joins (docs/joins.md): topics mirrored as parts of a JoinedTable, one per target
table, and the Republishers that publish its changed rows at their cadence, each in a thread
inside the service."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, Literal, cast

from sqlalchemy import ColumnElement, Table, text

from ferryman.errors import ConfigError
from ferryman.stores.database import Database
from ferryman.stores.joins import JoinedTable, KeyMap
from ferryman.stores.republisher import Build, Republisher
from ferryman.stores.tables import Row, field_columns, table_of
from ferryman.topics import EntityTopic, Topic

log = logging.getLogger(__name__)

SendEntity = Callable[[EntityTopic[Any], Any, Any], Any]
"""Produce ``(topic, key, value)``; value None: a tombstone. Returns a Delivery (or a future)."""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")


def seconds(value: float | str, what: str) -> float:
    """``value`` as seconds: a number, or text such as "1s", "500ms", "2m"."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None:
        raise ConfigError(
            f"{what}={value!r}: write seconds as a number (1.5) or text ('1s', '500ms', '2m')"
        )
    unit = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[match.group(2)]
    return float(match.group(1)) * unit


def default_build(topic: EntityTopic[Any]) -> Build:
    """The output value made of the row's columns named as the model's fields."""
    names = [c.field for c in field_columns(topic.model)]

    def build(row: Row, children: Mapping[str, list[Row]]) -> Any:
        return topic.model(**{n: row[n] for n in names if n in row})

    return build


class ServiceJoins:
    """The joined tables of one service (by table name) and their republishers."""

    def __init__(self, database: Callable[[], Database], send: SendEntity, name: str) -> None:
        self._database = database
        self._send = send
        self.name = name
        self.tables: dict[str, JoinedTable] = {}
        self.parts: dict[str, JoinedTable] = {}  # topic name -> its joined table
        self.republishers: dict[str, tuple[EntityTopic[Any], Republisher]] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def table(self, into: Any) -> JoinedTable:
        """The JoinedTable on ``into``'s table, made on first use."""
        name = table_of(into).name
        if name not in self.tables:
            self.tables[name] = JoinedTable(self._database(), into)
        return self.tables[name]

    def is_joined(self, into: Any) -> bool:
        """Whether ``into`` (anything; a Table or ORM class may be) is a joined table here."""
        table = into if isinstance(into, Table) else getattr(into, "__table__", None)
        return isinstance(table, Table) and table.name in self.tables

    def part(
        self,
        topic: Topic[Any],
        into: Any,
        fields: Sequence[str] | Mapping[str, str],
        key: str | KeyMap | None,
        *,
        owner: bool,
        required: bool,
    ) -> JoinedTable:
        """Make ``topic`` write ``fields`` of the joined table on ``into``."""
        joined = self.table(into)
        if owner:
            if joined.owner is not None:
                raise ConfigError(
                    f"joined table {joined.name!r} already has its owner {joined.owner!r}; "
                    f"mirror {topic.name!r} into it with fields=[...] (its own columns)"
                )
            joined.owner = topic.name
        joined.part(topic, fields, key=key, required=required)
        self.parts[topic.name] = joined
        return joined

    def source(
        self,
        topic: EntityTopic[Any],
        from_: Any,
        *,
        every: float | str,
        build: Build | None,
        debounce: float | str,
        incomplete: Literal["skip", "defaults"],
    ) -> Republisher:
        """Republish the joined table on ``from_`` to ``topic`` every ``every`` seconds."""
        if topic.name in self.republishers:
            raise ConfigError(
                f"service {self.name!r} already republishes {topic.name!r}; a topic has one source"
            )
        rep = Republisher(
            self._database(),
            self.tables[table_of(from_).name],
            build or default_build(topic),
            every=seconds(every, "every"),
            debounce=seconds(debounce, "debounce"),
            incomplete=incomplete,
        )
        self.republishers[topic.name] = (topic, rep)
        return rep

    def sender(self, topic: EntityTopic[Any]) -> Callable[[Any, Any], Future[Any]]:
        """``send(key, value)`` for a Republisher: produce to ``topic`` through the service."""
        return lambda key, value: cast("Future[Any]", self._send(topic, key, value))

    def backfill(
        self,
        topic_name: str,
        where: str | None = None,
        progress: Callable[[int, int], None] | None = None,
        rate: float | None = None,
    ) -> int:
        """Publish every row (or those matching the SQL ``where``) of ``topic_name``'s joined
        table now, in this thread, at most ``rate`` records a second; ``progress(sent, total)``
        follows it. Returns the rows marked."""
        if rate is not None and not rate > 0:
            raise ConfigError(f"rate={rate!r}: write records per second > 0, or leave it out")
        topic, rep = self.republishers[topic_name]
        condition = None if where is None else cast("ColumnElement[bool]", text(where))
        total = rep.republish_all(condition)
        send = self.sender(topic)
        sent = 0
        began = time.monotonic()

        def paced(key: Any, value: Any) -> Future[Any]:
            nonlocal sent
            if rate is not None:  # the n-th record waits for its slot in the rate
                time.sleep(max(0.0, began + sent / rate - time.monotonic()))
            sent += 1
            if progress is not None:
                progress(sent, total)
            return send(key, value)

        rep.run_once(paced)
        return total

    def start(self) -> None:
        """Start one thread per republisher."""
        self._stop.clear()
        for topic, rep in self.republishers.values():
            thread = threading.Thread(
                target=self._run,
                args=(topic, rep),
                name=f"ferryman republisher {topic.name}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def _run(self, topic: EntityTopic[Any], rep: Republisher) -> None:
        send = self.sender(topic)
        while not self._stop.is_set():
            try:
                rep.run(send, self._stop)
            except Exception:  # the keys stay marked: the next pass publishes them
                log.exception("republisher of %r: a pass failed; retrying", topic.name)
                self._stop.wait(rep.every)

    def stop(self) -> None:
        """Stop the republishers after their current pass."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._threads = []
