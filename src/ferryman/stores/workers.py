"""A service's outbox side: the outbox on its database, its entity sources and table pollers, and
the threads that run inside the service (a relay, one thread per poller).

The service hands down how to reach its database and producer and how it encodes; this module
owns the rest, so the service's part is a few delegating methods.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, inspect
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from ferryman.broker.base import Producer
from ferryman.errors import ConfigError
from ferryman.stores.database import Database
from ferryman.stores.leases import LEASES_TABLE, RELAYS_TABLE
from ferryman.stores.outbox import OUTBOX_TABLE, Outbox, OutboxRecord
from ferryman.stores.polling import TablePublisher
from ferryman.stores.producing import Encode, OutboxWriter
from ferryman.stores.relay import Relay
from ferryman.stores.source import EntitySource

log = logging.getLogger(__name__)

OUTBOX_TABLES = (OUTBOX_TABLE, LEASES_TABLE, RELAYS_TABLE)


class OutboxWorkers:
    """The outbox of one service and what feeds and drains it.

    ``relay``: True runs a relay whenever the service runs, False never (run ``ferryman relay``
    elsewhere), None when the service uses the outbox (a source, a poller, or ``outbox()``).
    """

    def __init__(
        self,
        database: Callable[[], Database],
        producer: Callable[[], Producer],
        partitions: Callable[[str], int],
        encode: Encode,
        *,
        relay: bool | None,
        name: str,
    ) -> None:
        self._database = database
        self._producer = producer
        self._partitions = partitions
        self.encode = encode
        self.relay_mode = relay
        self.name = name
        self.sources: dict[str, EntitySource] = {}
        self.publishers: list[TablePublisher] = []
        self._outbox: Outbox | None = None
        self._used = False
        self._tables_ready = False
        self._running = False
        self._stop = threading.Event()  # the relay's
        self._stop_pollers = threading.Event()
        self._relay: Relay | None = None
        self._threads: list[threading.Thread] = []
        self._relay_thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def outbox(self) -> Outbox:
        """The Outbox on the service's database."""
        with self._lock:
            if self._outbox is None:
                self._outbox = Outbox(self._database(), self._partitions)
            return self._outbox

    def ensure_tables(self, where: Session | Connection | None = None) -> None:
        """Create the outbox's tables when missing: through the service's engine, or with
        ``where`` in the caller's transaction (on SQLite another connection would wait for the
        caller's write lock forever); there they exist once it commits."""
        if self._tables_ready:
            return
        outbox = self.outbox
        if where is None:
            outbox.database.create_missing()
            self._tables_ready = True
            return
        conn = where.connection() if isinstance(where, Session) else where
        tables = [outbox.database.metadata.tables[name] for name in OUTBOX_TABLES]
        if all(inspect(conn).has_table(t.name) for t in tables):
            self._tables_ready = True
        else:
            outbox.database.lock_ddl(conn)
            outbox.database.metadata.create_all(conn, tables=tables, checkfirst=True)

    def _tables_exist(self) -> bool:
        with self._database().begin() as conn:
            return all(inspect(conn).has_table(name) for name in OUTBOX_TABLES)

    def writer(self, where: Session | Connection) -> OutboxWriter:
        """An OutboxWriter into ``where``'s transaction."""
        self.ensure_tables(where)
        writer = OutboxWriter(self.outbox, self.encode, where)
        self.used()
        return writer

    def write(self, session: Session, records: list[OutboxRecord]) -> None:
        """Write ``records`` into ``session``'s transaction (how sources write)."""
        self.ensure_tables(session)
        self.outbox.write(session, *records)

    def used(self) -> None:
        """The service wrote to its outbox: a running service with ``relay=None`` starts one."""
        self._used = True
        if self._running and self.relay_mode is None:
            self._start_relay()

    def owns(self, session: Session) -> bool:
        """Whether ``session`` writes to the service's database (sources ignore other ones)."""
        try:
            bind = session.get_bind()
        except Exception:  # an unbound session writes nowhere a source can reach
            return False
        return same_database(bind.engine.url, self._database().url)

    def add_source(self, source: EntitySource) -> None:
        """Publish ``source``'s model through the outbox from now on."""
        if source.topic.name in self.sources:
            raise ConfigError(
                f"service {self.name!r} already sources {source.topic.name!r} from "
                f"{self.sources[source.topic.name].model.__name__}; a topic has one source table"
            )
        self.sources[source.topic.name] = source
        source.attach()

    def add_publisher(self, publisher: TablePublisher) -> None:
        if self._running:
            raise ConfigError(f"service {self.name!r} is running: call poll_table() before start()")
        self.publishers.append(publisher)

    def republish(self, topic_name: str) -> int:
        """Backfill the whole table of the source of ``topic_name`` through the outbox."""
        source = self.sources.get(topic_name)
        if source is None:
            raise ConfigError(
                f"service {self.name!r} has no source for {topic_name!r} (its sources: "
                f"{', '.join(sorted(self.sources)) or 'none'}); declare svc.source(topic, "
                "from_=Model) first"
            )
        self.ensure_tables()
        with self._database().sessions.begin() as session:
            return source.republish(session)

    # -- threads -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the pollers, and the relay when the service uses the outbox."""
        self._stop.clear()
        self._stop_pollers.clear()
        self._running = True
        wants = self.relay_mode or (
            self.relay_mode is None and (self._used or self.sources or self.publishers)
        )
        if self.publishers or wants:
            self.ensure_tables()
        for publisher in self.publishers:
            self._spawn(f"poller {publisher.poller.name}", self._poll, publisher)
        if wants:
            self._start_relay()

    def _start_relay(self) -> None:
        with self._lock:
            if self._relay_thread is not None or not self._running:
                return
            self._relay = Relay(self._database(), self._producer())
            self._relay_thread = self._spawn(f"relay {self.name}", self._relay_run)

    def _poll(self, publisher: TablePublisher) -> None:
        publisher.run(self._stop_pollers, self._database(), self.outbox, self.encode)

    def _relay_run(self) -> None:
        assert self._relay is not None
        # Started by a first outbox() whose transaction may be creating the tables: wait for them.
        while not self._tables_ready and not self._stop.is_set():
            try:
                self._tables_ready = self._tables_exist()
            except Exception:
                log.exception("outbox relay: cannot look for the outbox tables; retrying")
            if not self._tables_ready:
                self._stop.wait(self._relay.poll_interval)
        self._relay.run(self._stop)

    def _spawn(self, what: str, target: Callable[..., Any], *args: Any) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, name=f"ferryman {what}", daemon=True)
        thread.start()
        self._threads.append(thread)
        return thread

    def stop(self) -> None:
        """Stop the pollers, then the relay: it finishes its round (awaits the acknowledgements
        of what it sent and deletes those rows), then hands its leases over."""
        self._running = False
        self._stop_pollers.set()
        relay_thread = self._relay_thread
        for thread in self._threads:
            if thread is not relay_thread:
                thread.join()
        self._stop.set()  # after the pollers, so the relay may send their last rows this round
        if relay_thread is not None:
            relay_thread.join()
        self._threads = []
        self._relay_thread = None
        relay, self._relay = self._relay, None
        if relay is not None:
            relay.close()

    def run_relay(self, stop: threading.Event) -> None:
        """Run only a relay, in this thread, until ``stop`` is set (``ferryman relay``)."""
        self.ensure_tables()
        relay = Relay(self._database(), self._producer())
        try:
            relay.run(stop)
        finally:
            relay.close()


def same_database(a: URL, b: URL) -> bool:
    """Whether two SQLAlchemy URLs name one database: SQLite files by resolved path (a relative
    path and its absolute form are one file), others by everything but the password."""
    if a.get_backend_name() == b.get_backend_name() == "sqlite":
        if not a.database or not b.database or ":memory:" in (a.database, b.database):
            return a == b
        return Path(a.database).resolve() == Path(b.database).resolve()
    return a.set(password=None) == b.set(password=None)
