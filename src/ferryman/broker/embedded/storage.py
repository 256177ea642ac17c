"""The SQLite file: opening it, its schema and version, and writes that wait out contention.

Durability: the file runs in WAL mode with ``synchronous=NORMAL``. A transaction is in the
WAL (in the OS page cache) when COMMIT returns, so it survives the *process* being killed,
even by SIGKILL; only a power loss or OS crash can lose the last transactions (never corrupt
the file). ``fsync=True`` selects ``synchronous=FULL`` for power-loss durability at the cost
of one fsync per produced batch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ferryman.errors import IncompatibleStorage, StorageError

T = TypeVar("T")
log = logging.getLogger("ferryman.broker.embedded")

APPLICATION_ID = 0x46455259  # "FERY": marks the file as a ferryman broker
SCHEMA_VERSION = 1
BUSY_TIMEOUT = 30.0
"""Seconds a writer waits for another process's transaction before it gives up."""

WAL_LIMIT = 64 << 20
"""Bytes of WAL beyond which the checkpointer truncates it (and SQLite trims it to on reuse)."""

TRUNCATE_WAIT_MS = 200
"""How long a truncating checkpoint waits for readers to move on; it holds writers back meanwhile."""

PID_SHIFT = 40
"""Batch ids are ``pid << PID_SHIFT | base_offset``: one integer key orders a whole partition."""

_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE topics(
    name TEXT PRIMARY KEY, partitions INTEGER NOT NULL, config TEXT NOT NULL,
    created_ms INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE partitions(
    pid INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL, partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL DEFAULT 0,
    log_start INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL DEFAULT 0,
    clean_upto INTEGER NOT NULL DEFAULT 0,
    tomb_upto INTEGER NOT NULL DEFAULT 0,
    UNIQUE(topic, partition));
CREATE TABLE batches(
    id INTEGER PRIMARY KEY,
    last_offset INTEGER NOT NULL,
    count INTEGER NOT NULL,
    max_ts INTEGER NOT NULL,
    size INTEGER NOT NULL,
    deltas BLOB,
    data BLOB NOT NULL,
    crc INTEGER);
CREATE TABLE clean_marks(pid INTEGER NOT NULL, upto INTEGER NOT NULL, at_ms INTEGER NOT NULL);
CREATE INDEX clean_marks_pid ON clean_marks(pid, at_ms);
CREATE TABLE groups(group_id TEXT PRIMARY KEY, generation INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE members(
    group_id TEXT NOT NULL, member_id TEXT NOT NULL, topics TEXT NOT NULL,
    strategy TEXT NOT NULL, heartbeat_ms INTEGER NOT NULL, session_ms INTEGER NOT NULL,
    PRIMARY KEY(group_id, member_id)) WITHOUT ROWID;
CREATE TABLE owners(
    group_id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
    member_id TEXT NOT NULL, PRIMARY KEY(group_id, topic, partition)) WITHOUT ROWID;
CREATE TABLE offsets(
    group_id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
    offset INTEGER NOT NULL, PRIMARY KEY(group_id, topic, partition)) WITHOUT ROWID;
INSERT INTO meta(key, value) VALUES ('topics_version', '0');
"""

_WHAT_TO_DO = (
    "point FERRYMAN_BROKER (or the embedded:PATH URL) at another file, or move this one aside "
    "so a fresh one is created"
)


_NO_ROOM = {"SQLITE_FULL", "SQLITE_IOERR_WRITE", "SQLITE_IOERR_FSYNC", "SQLITE_IOERR_TRUNCATE"}
"""What SQLite reports when the disk, a quota or ``ulimit -f`` leaves no room to write."""


def storage_error(path: Path, exc: BaseException) -> StorageError:
    """A StorageError naming the file, what SQLite said, and what to do."""
    text = str(exc)
    if isinstance(exc, OSError) or "unable to open" in text:
        return StorageError(
            f"cannot open the embedded broker file {str(path)!r}: {text}; check that the "
            "directory exists and is writable, or choose another path with embedded:PATH"
        )
    if "readonly" in text or "read-only" in text:
        return StorageError(
            f"the embedded broker file {str(path)!r} is read-only ({text}); make it and its "
            "directory writable, or choose another path with embedded:PATH"
        )
    if is_busy(exc):
        return StorageError(
            f"the embedded broker file {str(path)!r} stayed locked by another writer for more "
            f"than {BUSY_TIMEOUT:.0f} s ({text}); a process is holding a long transaction or "
            "is stopped while writing: let it finish or stop it, then try again"
        )
    code = getattr(exc, "sqlite_errorname", "")
    if code in _NO_ROOM:
        return StorageError(
            f"writing the embedded broker file {str(path)!r} failed ({text}): the disk is "
            "probably full, or a quota or file size limit (ulimit -f) was reached; free disk "
            "space or raise the limit, then retry (what was not acknowledged was not written)"
        )
    if code.startswith("SQLITE_IOERR"):
        return StorageError(
            f"the operating system failed an I/O on the embedded broker file {str(path)!r} "
            f"({text}); check the disk and its file system (dmesg), then retry"
        )
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return StorageError(
            f"the embedded broker file {str(path)!r} is not a valid SQLite database or is "
            f"corrupt ({text}); {_WHAT_TO_DO}"
        )
    return StorageError(f"the embedded broker file {str(path)!r} failed: {text}")


def damaged_batch(
    path: Path, topic: str, partition: int, first: int, last: int, why: object
) -> StorageError:
    """A StorageError for a batch row that fails its checksum or does not decode."""
    return StorageError(
        f"the embedded broker file {str(path)!r} has a damaged batch in topic {topic!r} "
        f"partition {partition}, offsets {first} to {last}: {why}; stop the services using "
        f"the file, then drop the damaged batches with "
        f"ferryman.broker.embedded.drop_damaged_batches({str(path)!r}) (its records are lost; "
        "see 'Damaged batches' in docs/broker.md)"
    )


def is_busy(exc: BaseException) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


class Store:
    """Where the broker file is and how to open connections to it."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.wake_dir = self.path.with_name(self.path.name + "-wake")
        self._synchronous = "FULL" if fsync else "NORMAL"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.wake_dir.mkdir(exist_ok=True)
        except OSError as exc:
            raise storage_error(self.path, exc) from exc
        if self.path.is_dir():
            raise StorageError(
                f"the embedded broker path {str(self.path)!r} is a directory; "
                "name a file inside it, for example embedded:.ferryman/broker.db"
            )
        if self.path.exists() and not self.path.is_file():
            # a device or pipe (/dev/null, /proc/...) fails later with a misleading disk error
            raise StorageError(
                f"the embedded broker path {str(self.path)!r} is not a regular file; "
                "name a file in a writable directory, for example embedded:.ferryman/broker.db"
            )
        self._gone: StorageError | None = None
        conn = self.connect()
        try:
            self._initialize(conn)
        finally:
            conn.close()
        self._absolute = self.path.absolute()  # a later chdir must not look like a deletion
        try:
            st = os.stat(self._absolute)
        except OSError as exc:
            raise storage_error(self.path, exc) from exc
        self._identity_of_file = (st.st_dev, st.st_ino)

    def check_file(self) -> None:
        """Raise StorageError if the file at the path is no longer the one this process opened
        (deleted or replaced): what is written then would vanish with the process.

        One stat, cheap enough for every produced batch and every wake-up of a reader.
        """
        if self._gone is not None:
            raise self._gone
        try:
            st = os.stat(self._absolute)
        except FileNotFoundError:
            what = "was deleted"
        except OSError:
            return  # unreadable metadata says nothing about identity; I/O will report it
        else:
            if (st.st_dev, st.st_ino) == self._identity_of_file:
                return
            what = "was replaced by another file"
        self._gone = StorageError(
            f"the embedded broker file {str(self.path)!r} {what} while this process had it "
            "open: what it writes now would vanish when it stops, and processes started since "
            "use a different log; stop every process using that path, put the right file back "
            "(or accept the new one), and start them again"
        )
        raise self._gone

    def connect(self) -> sqlite3.Connection:
        """A new connection in autocommit mode; transactions are opened explicitly."""
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT,
                isolation_level=None,
                check_same_thread=False,  # each owner serialises its own use
            )
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            # checkpoints (which fsync) run in the Checkpointer's thread, not in the commit
            # path of a producer, where they would show as latency spikes
            conn.execute("PRAGMA wal_autocheckpoint=0")
            # when the WAL is reused from its start, SQLite cuts the file down to this size
            conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
            conn.execute("PRAGMA temp_store=MEMORY")
        except sqlite3.Error as exc:
            raise storage_error(self.path, exc) from exc
        return conn

    def _initialize(self, conn: sqlite3.Connection) -> None:
        try:
            app_id, version = self._identity(conn)
            if app_id == 0 and version == 0:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if mode != "wal":
                    raise StorageError(
                        f"the embedded broker file {str(self.path)!r} cannot use WAL mode "
                        f"(got {mode!r}); put it on a local file system"
                    )
                write(conn, self.path, self._create_schema)
                app_id, version = self._identity(conn)
            if app_id == APPLICATION_ID and not self._has_checksums(conn):
                write(conn, self.path, self._add_checksums)
        except sqlite3.Error as exc:
            raise storage_error(self.path, exc) from exc
        if app_id != APPLICATION_ID:
            raise StorageError(
                f"{str(self.path)!r} is an SQLite database but not an embedded broker file "
                f"(application id {app_id:#x}); {_WHAT_TO_DO}"
            )
        if version != SCHEMA_VERSION:
            newer = "a newer" if version > SCHEMA_VERSION else "an older"
            raise IncompatibleStorage(
                f"the embedded broker file {str(self.path)!r} was written by {newer} version "
                f"of ferryman (storage schema {version}; this version reads schema "
                f"{SCHEMA_VERSION}); use the ferryman version that wrote it, or {_WHAT_TO_DO}"
            )

    @staticmethod
    def _identity(conn: sqlite3.Connection) -> tuple[int, int]:
        app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        # reading the schema makes a damaged first page show up now rather than later
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return app_id, version

    @staticmethod
    def _has_checksums(conn: sqlite3.Connection) -> bool:
        return any(row[1] == "crc" for row in conn.execute("PRAGMA table_info(batches)"))

    def _add_checksums(self, conn: sqlite3.Connection) -> None:
        # a file from before checksums: its rows keep NULL (read unchecked), new rows get one;
        # an older ferryman sharing the file still works (it names the columns it writes)
        if not self._has_checksums(conn):
            conn.execute("ALTER TABLE batches ADD COLUMN crc INTEGER")

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        # re-checked inside the write lock: another process may have initialised the file
        if int(conn.execute("PRAGMA user_version").fetchone()[0]) != 0:
            return
        if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise StorageError(
                f"{str(self.path)!r} is an SQLite database but not an embedded broker file; "
                f"{_WHAT_TO_DO}"
            )
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def write(
    conn: sqlite3.Connection,
    path: Path,
    body: Callable[[sqlite3.Connection], T],
    *,
    patient: bool = False,
) -> T:
    """Run ``body`` in one write transaction, waiting while other writers hold the lock.

    The wait is bounded by ``BUSY_TIMEOUT``; a ``patient`` caller (producing, committing,
    joining a group) waits as long as it takes instead, logging a warning every
    ``BUSY_TIMEOUT``: a writer stopped by SIGSTOP or Ctrl-Z holds the lock until it resumes,
    and failing then would stop every service on the file. Errors raised by ``body`` roll the
    transaction back and propagate unchanged.
    """
    started = time.monotonic()
    deadline = started + BUSY_TIMEOUT
    delay = 0.001
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = body(conn)
                conn.execute("COMMIT")
                return result
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            if is_busy(exc) and patient and time.monotonic() >= deadline:
                log.warning(
                    "the embedded broker file %r has been locked by another writer for %.1f s; "
                    "waiting for it (a process holds a long transaction or is stopped while "
                    "writing: resume it or stop it)",
                    str(path),
                    time.monotonic() - started,
                )
                deadline = time.monotonic() + BUSY_TIMEOUT
            if is_busy(exc) and time.monotonic() < deadline:
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
                continue
            raise storage_error(path, exc) from exc
        except sqlite3.Error as exc:
            raise storage_error(path, exc) from exc


def read(
    conn: sqlite3.Connection, path: Path, sql: str, params: tuple[object, ...] = ()
) -> list[Any]:
    """All rows of a query, with SQLite errors turned into StorageError."""
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.Error as exc:
        raise storage_error(path, exc) from exc


def bump_topics_version(conn: sqlite3.Connection) -> None:
    """Tell group members that topics changed, so they recompute their assignment."""
    conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'topics_version'")


class Checkpointer:
    """Copies the WAL back into the database file from a background thread: every second, and
    as soon as producers have written ``EAGER_BYTES`` since the last time.

    A WAL is reused from its start only when no reader is using it, which a busy consumer
    rarely allows: under load it would grow without bound. So once it passes ``WAL_LIMIT`` a
    TRUNCATE checkpoint waits (briefly, holding writers back) for readers to move on and empties it.
    """

    EAGER_BYTES = 4 << 20

    def __init__(self, store: Store) -> None:
        self._store = store
        self._written = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="ferryman-embedded-checkpoint", daemon=True
        )
        self._thread.start()

    def wrote(self, nbytes: int) -> None:
        self._written += nbytes
        if self._written >= self.EAGER_BYTES:
            self._wake.set()

    def _run(self) -> None:
        conn = self._store.connect()
        wal = self._store.path.with_name(self._store.path.name + "-wal")
        try:
            conn.execute(f"PRAGMA busy_timeout={TRUNCATE_WAIT_MS}")
            while not self._stop.is_set():
                self._wake.wait(1.0)
                self._wake.clear()
                self._written = 0
                # PASSIVE never blocks readers or writers; another process's checkpoint or a
                # busy file just means it is tried again next time
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                try:
                    too_big = wal.stat().st_size > WAL_LIMIT
                except OSError:
                    too_big = False
                if too_big:
                    # PASSIVE copied most of it already, so this waits only for readers
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join()
