"""A service's database side: mirrors, transactional handlers, lag and reconcile, the outbox,
entity sources, table pollers and their relay (docs/stores.md, docs/outbox.md).

The Service composes one ``ServiceData`` and hands it how to reach the broker and codecs
(``Connections``), how to register a route and declare a topic, and its consumer group; the
Service's public methods delegate here.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, TypeVar, cast

from sqlalchemy import Connection, Table
from sqlalchemy.orm import Session

from ferryman.errors import ConfigError
from ferryman.runtime.connections import Connections
from ferryman.runtime.encoding import FROM_VALUE, EncodedRecord, expect_kind
from ferryman.runtime.handlers import Input, Route, is_async
from ferryman.runtime.snapshot import Progress, latest_state
from ferryman.runtime.threads import in_thread
from ferryman.service.joins import SendEntity, ServiceJoins
from ferryman.stores.database import Database
from ferryman.stores.joins import JoinedTable, KeyMap
from ferryman.stores.mirror import Mirror
from ferryman.stores.outbox import OutboxRecord
from ferryman.stores.poller import TablePoller
from ferryman.stores.polling import TablePublisher
from ferryman.stores.producing import OutboxWriter
from ferryman.stores.reconcile import Drift, compare
from ferryman.stores.routes import (
    LagStats,
    MirrorLag,
    StoreRun,
    TransactionalRun,
    mirror_lag,
    other_positionals,
    stored_offsets,
)
from ferryman.stores.source import EntitySource
from ferryman.stores.tables import Transform, field_columns, table_of
from ferryman.stores.workers import OutboxWorkers
from ferryman.topics import EntityTopic, EventTopic, Topic

T = TypeVar("T")

MIRROR_BATCH = 5000
"""Records of one partition a mirror applies per transaction, at most (fewer when fewer wait)."""
TRANSACTION_CHUNK = 500
"""Records a transactional handler handles per transaction (one record at a time after a
failure, so only the failing record is dead-lettered)."""


class ServiceData:
    """The database, mirrors, transactional routes and outbox of the service ``name``."""

    def __init__(
        self,
        name: str,
        database_url: str,
        conn: Connections,
        *,
        group: Callable[[], str],
        add_route: Callable[[Route], None],
        declare: Callable[[Topic[Any]], None],
        encode: Callable[..., EncodedRecord],
        relay: bool | None,
        send: SendEntity,
    ) -> None:
        self.name = name
        self._database_url = database_url
        self._conn = conn
        self._group = group
        self._add_route = add_route
        self._declare = declare
        self._encode = encode
        self._db: Database | None = None
        self.mirrors: dict[str, Mirror] = {}
        self._create_tables: list[Mirror] = []
        self._has_stored_offsets = False
        self._runs: dict[str, StoreRun] = {}
        # a plain mirror's field mapping, for when a join makes it the owner part of its table
        self._renames: dict[str, tuple[Mapping[str, str] | None, Collection[str]]] = {}
        self.joins = ServiceJoins(lambda: self.database, send, name)
        self._lag_stats = LagStats(self.lag)
        self.outboxes = OutboxWorkers(
            lambda: self.database,
            lambda: self._conn.producer,
            lambda topic: self._conn.admin.describe_topic(topic).partitions,
            self.encode_for_outbox,
            relay=relay,
            name=name,
        )

    @property
    def database_opened(self) -> bool:
        """Whether the service uses its database (health checks and scrapes ask it then)."""
        return self._db is not None

    @property
    def database(self) -> Database:
        """The service's own database, opened on first use."""
        if self._db is None:
            self._db = Database(self._database_url)
        return self._db

    def _store_route(
        self,
        topic: Topic[Any],
        run: Any,
        batch: int,
        name: str,
        isolate: bool,
        given: Input = "keyed",
    ) -> None:
        # Stores take the loop's Keyed tuples (no Message per record); a transactional handler
        # takes Messages, since it may ask for one.
        self._has_stored_offsets = True
        self._add_route(
            Route(
                topic,
                functools.partial(in_thread, run),
                batch,
                name,
                given,
                isolate=isolate,
                stored_offsets=stored_offsets(self.database, self._group()),
            )
        )

    # -- mirrors and transactional handlers --------------------------------------------

    def mirror(
        self,
        topic: Topic[Any],
        into: Any,
        *,
        table: str | None,
        rename: Mapping[str, str] | None,
        exclude: Collection[str],
        transform: Transform | None,
        create_table: bool,
        fields: Sequence[str] | Mapping[str, str] | None = None,
        key: str | KeyMap | None = None,
        required: bool = True,
    ) -> Mirror | JoinedTable:
        """Route ``topic`` into a Mirror of the service's database, or, with ``fields`` (or
        into a table that is joined already), into its part of a JoinedTable."""
        if fields is not None or self.joins.is_joined(into):
            return self._part(topic, into, fields, key, rename, exclude, transform, required)
        mirror = Mirror(  # Mirror refuses a topic that is not an entity topic
            self.database,
            cast("EntityTopic[Any]", topic),
            into,
            table=table,
            rename=rename,
            exclude=exclude,
            transform=transform,
        )
        run = StoreRun(self.database, mirror, self._group(), self._applied(topic, mirror.table))
        self._store_route(topic, run, MIRROR_BATCH, repr(mirror), isolate=True)
        self.mirrors[topic.name] = mirror
        self._runs[topic.name] = run
        self._renames[topic.name] = (rename, exclude)
        if create_table:
            self._create_tables.append(mirror)
        return mirror

    def _part(
        self,
        topic: Topic[Any],
        into: Any,
        fields: Sequence[str] | Mapping[str, str] | None,
        key: str | KeyMap | None,
        rename: Mapping[str, str] | None,
        exclude: Collection[str],
        transform: Transform | None,
        required: bool,
    ) -> JoinedTable:
        """``topic`` as a part of the joined table on ``into``; without ``fields``, the owner
        part (every field of its model but the key). An earlier plain mirror into that table
        becomes its owner part."""
        if into is None or transform is not None:
            raise ConfigError(
                f"mirror of {topic.name!r} with fields=: name the joined table with into= (a "
                "Table or ORM class) and map fields with fields= or rename=, not transform="
            )
        name = table_of(into).name
        plain = [m for m in self.mirrors.values() if m.table.name == name]
        joined = self.joins.table(into)
        for m in plain:  # the first mirror into the table owns it
            owned = _model_fields(m.topic, *self._renames[m.topic.name])
            self.joins.part(m.topic, into, owned, None, owner=True, required=True)
            self._runs[m.topic.name].store = joined
            del self.mirrors[m.topic.name]
        if fields is None:
            expect_kind(topic, EntityTopic, "mirror", "on")
            fields = _model_fields(cast("EntityTopic[Any]", topic), rename, exclude)
            self.joins.part(topic, into, fields, key, owner=True, required=True)
        else:
            self.joins.part(topic, into, fields, key, owner=False, required=required)
        run = StoreRun(self.database, joined, self._group(), self._applied(topic, table_of(into)))
        self._store_route(topic, run, MIRROR_BATCH, repr(joined), isolate=True)
        self._runs[topic.name] = run
        return joined

    def _applied(self, topic: Topic[Any], table: Table) -> Callable[[int], None]:
        """Counts the records a run applied to ``table`` (read at call time: the service sets
        its metrics after its stores are declared)."""
        return lambda n: self._conn.metrics.mirror_applied(topic.name, table.name, n)

    def transactional_route(
        self, topic: Topic[Any], fn: Callable[..., Any], batch: int | None, session: str
    ) -> None:
        """Route ``topic`` to ``fn(value, session)``, committed with the record's offset."""
        if is_async(fn):
            raise ConfigError(
                f"handler {fn.__qualname__} asks for a database session but is async; sessions "
                "are blocking: write it as a plain def (it runs in a worker thread)"
            )
        run = TransactionalRun(
            self.database,
            fn,
            self._group(),
            batch=batch is not None,
            with_message=other_positionals(fn, session) == 2,
            session_param=session,
        )
        # A user's batch is dead-lettered whole, as without a session.
        name = getattr(fn, "__qualname__", repr(fn))
        self._store_route(
            topic, run, batch or TRANSACTION_CHUNK, name, isolate=batch is None, given="message"
        )

    def prepare(self) -> None:
        """Create ferryman's offsets table and the mirrors' missing tables; then check that
        every mirror's table has the columns it writes (MirrorSchemaError otherwise)."""
        if not self.mirrors and not self._has_stored_offsets:
            return
        db = self.database
        joined = [j.table for j in self.joins.tables.values()]
        if joined:
            joined += [*{j.dirty for j in self.joins.tables.values()}]
            joined += [*{j.join_keys for j in self.joins.tables.values()}]
        # (a joined table may be on the user's own MetaData: created there, in the same turn)
        db.create_missing([db.offsets.table, *(m.table for m in self._create_tables), *joined])
        with db.read() as conn:
            for mirror in self.mirrors.values():
                mirror.check(conn)

    def lag(self) -> dict[str, MirrorLag]:
        """Each mirror's lag, from the broker's high watermarks and the stored offsets."""
        admin = self._conn.admin
        lags: dict[str, MirrorLag] = {}
        with self.database.read() as conn:
            for name in sorted({*self.mirrors, *self.joins.parts}):
                latest = {p: o.latest for p, o in admin.offsets(name).items()}
                lags[name] = mirror_lag(conn, self.database, self._group(), name, latest)
        return lags

    def lag_stats(self) -> dict[str, int]:
        """The mirrors' lag as ``stats`` counters, never waiting for the broker (LagStats);
        zeros for a service without mirrors."""
        if not self.mirrors and not self.joins.parts:
            return {"mirror_lag_records": 0, "mirror_lag_ms": 0}
        return self._lag_stats()

    def reconcile(self, topic: str | None, progress: Progress | None) -> list[Drift]:
        """Compare each mirror (or ``topic``'s) with its topic's latest state in the log."""
        if topic is not None and topic not in self.mirrors:
            raise ConfigError(
                f"service {self.name!r} has no mirror of {topic!r}; its mirrors: "
                f"{', '.join(sorted(self.mirrors)) or 'none'}"
            )
        drifts: list[Drift] = []
        for name in [topic] if topic is not None else sorted(self.mirrors):
            mirror = self.mirrors[name]
            latest = latest_state(
                self._conn.broker, self._conn.admin, self._conn.serde, mirror.topic, progress
            )
            with self.database.read() as conn:
                drifts.append(compare(conn, mirror, latest))
        return drifts

    # -- outbox, relay, entity sources, table pollers ----------------------------------

    def outbox(self, session: Session | Connection) -> OutboxWriter:
        """An OutboxWriter into ``session``'s transaction."""
        return self.outboxes.writer(session)

    def source(
        self,
        topic: EntityTopic[T],
        from_: type[Any],
        *,
        watch: Collection[str] | None,
        to_value: Callable[[Any], T] | None,
        every: float | str | None = None,
        build: Callable[[Any, Any], Any] | None = None,
        debounce: float | str = 0.0,
        incomplete: Literal["skip", "defaults"] = "skip",
    ) -> None:
        """Publish ORM model ``from_``'s rows as ``topic`` through the outbox; or, when
        ``from_`` is a joined table, republish its changed rows every ``every`` seconds."""
        self._declare(topic)
        if self.joins.is_joined(from_):
            expect_kind(topic, EntityTopic, "source", "emit")
            if every is None:
                raise ConfigError(
                    f"source({topic.name!r}, from_={table_of(from_).name}) is a joined table: "
                    "say how often to republish it, e.g. every='1s'"
                )
            self.joins.source(
                topic, from_, every=every, build=build, debounce=debounce, incomplete=incomplete
            )
            return
        if every is not None or build is not None:
            raise ConfigError(
                f"every=/build= republish a joined table, and {from_!r} is not one: mirror "
                "topics into it with fields=[...] first, or leave every=/build= out"
            )
        self.outboxes.add_source(
            EntitySource(
                topic,
                from_,
                encode=self.encode_for_outbox,
                write=self.outboxes.write,
                owns=self.outboxes.owns,
                watch=watch,
                to_value=to_value,
            )
        )

    def republish(
        self,
        topic: EntityTopic[Any] | str,
        where: str | None = None,
        progress: Callable[[int, int], None] | None = None,
        rate: float | None = None,
    ) -> int:
        """Backfill ``topic``'s source table into the outbox, or publish its joined table's
        rows (those matching SQL ``where``, ``rate`` a second); returns how many rows."""
        if not isinstance(topic, str):
            expect_kind(topic, EntityTopic, "republish", "source")
        name = topic if isinstance(topic, str) else topic.name
        if name in self.joins.republishers:
            self.prepare()
            return self.joins.backfill(name, where, progress, rate)
        if where is not None or rate is not None:
            raise ConfigError(
                f"where= and rate= shape a joined table's backfill, and {name!r} is not "
                "republished from one; leave them out to backfill an entity source's table"
            )
        count = self.outboxes.republish(topic if isinstance(topic, str) else topic.name)
        self.outboxes.used()
        return count

    def poll_table(
        self,
        table: Table,
        topic: Topic[T],
        *,
        updated_at: str,
        id: str,
        every: float,
        safety_delay: float,
        to_value: Callable[[Any], T] | None,
        name: str | None,
    ) -> None:
        """Publish ``table``'s changed rows to ``topic`` while the service runs."""
        self._declare(topic)
        poller = TablePoller(
            self.database,
            table,
            updated_at=updated_at,
            id=id,
            safety_delay=safety_delay,
            name=name,
        )
        self.outboxes.add_publisher(TablePublisher(poller, topic, every=every, to_value=to_value))

    def run_relay(self, stop: threading.Event) -> None:
        """Run only the outbox relay, in this thread, until ``stop`` is set."""
        self.outboxes.run_relay(stop)

    def encode_for_outbox(
        self,
        call: str,
        topic: Any,
        arg: Any,
        headers: Mapping[str, bytes | str] | None,
        timestamp: datetime | float | None,
        allow_expired: bool,
    ) -> OutboxRecord:
        """The record ``call`` (publish, delete, emit) would send, checked as a direct send is,
        with the topic created or checked so that its partition count is known."""
        if call == "emit":
            expect_kind(topic, EventTopic, "emit", "publish")
        else:
            expect_kind(topic, EntityTopic, call, "emit")
        value, key = (None, arg) if call == "delete" else (arg, FROM_VALUE)
        record = self._encode(topic, value, key, headers, timestamp, allow_expired)
        return OutboxRecord(
            record.topic, record.key, record.value, record.headers, record.timestamp_ms
        )

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the threads that run inside the service (relay, pollers, republishers)."""
        self.outboxes.start()
        self.joins.start()
        self._lag_stats.start()

    def stop(self) -> None:
        """Stop those threads (the republishers, the pollers, then the relay)."""
        self._lag_stats.stop()
        self.joins.stop()
        self.outboxes.stop()

    def close(self) -> None:
        """Dispose of the database's engine, if it was opened."""
        if self._db is not None:
            self._db.dispose()


def _model_fields(
    topic: EntityTopic[Any], rename: Mapping[str, str] | None = None, exclude: Collection[str] = ()
) -> dict[str, str]:
    """Every field of ``topic``'s model but its key, as field -> column."""
    columns = field_columns(topic.model, rename=rename, exclude=exclude)
    return {c.field: c.column for c in columns if c.field != topic.key}
