"""The embedded schema registry: one SQLite file that many processes on one machine share.

WAL mode and a busy timeout let processes read while one writes; each registration runs in one
``BEGIN IMMEDIATE`` transaction, so two processes registering at once get consistent versions and
ids. Deleting a subject removes its versions for good; schema ids stay valid forever.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ferryman.errors import IncompatibleSchema, RegistryError, SchemaNotFound, StorageError
from ferryman.schema.compat import DEFAULT_COMPATIBILITY, Compatibility, check_compatibility
from ferryman.schema.parsing import AvroSchema, canonical, parse, parse_schema_text
from ferryman.schema.registry import RegisteredSchema, Version

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schemas (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    canonical TEXT NOT NULL UNIQUE,
    schema TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS subject_versions (
    subject TEXT NOT NULL,
    version INTEGER NOT NULL,
    schema_id INTEGER NOT NULL REFERENCES schemas(id),
    PRIMARY KEY (subject, version)
);
CREATE INDEX IF NOT EXISTS subject_versions_by_id ON subject_versions(schema_id);
CREATE TABLE IF NOT EXISTS config (
    subject TEXT PRIMARY KEY,  -- '' is the global default
    compatibility TEXT NOT NULL
);
"""
_BUSY_TIMEOUT_S = 30.0


class EmbeddedRegistry:
    """A schema registry in a SQLite file (services keep it beside the embedded broker's)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._by_id: dict[int, AvroSchema] = {}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE) so writers serialize.
            self._db = sqlite3.connect(
                self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            self._db.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            with self._write() as db:
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        db.execute(stmt)
        except sqlite3.Error as exc:
            raise StorageError(
                f"cannot open the schema registry file {str(self.path)!r} ({exc}); check that its "
                "directory is writable and the file is a ferryman registry"
            ) from exc

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._sqlite_errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _rows(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        with self._lock, self._sqlite_errors():
            return self._db.execute(sql, args).fetchall()

    @contextmanager
    def _sqlite_errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise RegistryError(
                f"the schema registry file {str(self.path)!r} failed ({exc}); check the disk and "
                "that no process holds a write lock for long"
            ) from exc

    def register(self, subject: str, schema: AvroSchema) -> int:
        """Register ``schema`` under ``subject``; the same schema again returns the same id."""
        schema = _valid(schema)  # before anything is stored
        canon = canonical(schema)
        with self._write() as db:
            row = db.execute(
                "SELECT sv.schema_id FROM subject_versions sv JOIN schemas s ON s.id = sv.schema_id "
                "WHERE sv.subject = ? AND s.canonical = ?",
                (subject, canon),
            ).fetchone()
            if row is not None:
                return int(row[0])
            level = self._level(db, subject)
            problems = check_compatibility(schema, self._existing(db, subject), level)
            if problems:
                raise IncompatibleSchema(
                    f"the new schema for subject {subject!r} breaks its {level} compatibility "
                    f"rule: {'; '.join(problems)}. Make the change compatible (for example give a "
                    "new field a default) or change the subject's compatibility on purpose"
                )
            db.execute(
                "INSERT OR IGNORE INTO schemas (canonical, schema) VALUES (?, ?)",
                (canon, json.dumps(schema)),
            )
            (schema_id,) = db.execute(
                "SELECT id FROM schemas WHERE canonical = ?", (canon,)
            ).fetchone()
            (last,) = db.execute(
                "SELECT COALESCE(MAX(version), 0) FROM subject_versions WHERE subject = ?",
                (subject,),
            ).fetchone()
            db.execute(
                "INSERT INTO subject_versions (subject, version, schema_id) VALUES (?, ?, ?)",
                (subject, last + 1, schema_id),
            )
            return int(schema_id)

    def lookup(self, subject: str, schema: AvroSchema) -> RegisteredSchema:
        """The version of ``subject`` that holds ``schema``."""
        canon = canonical(parse_schema_text(schema))
        rows = self._rows(
            "SELECT sv.version, s.id, s.schema FROM subject_versions sv "
            "JOIN schemas s ON s.id = sv.schema_id WHERE sv.subject = ? AND s.canonical = ?",
            subject,
            canon,
        )
        if not rows:
            self._require_subject(subject)
            raise SchemaNotFound(
                f"subject {subject!r} has no version with this schema; register it first"
            )
        version, schema_id, text = rows[0]
        return RegisteredSchema(
            subject, int(str(version)), int(str(schema_id)), json.loads(str(text))
        )

    def get_schema(self, schema_id: int) -> AvroSchema:
        """The schema with id ``schema_id`` (cached: ids never change)."""
        found = self._by_id.get(schema_id)
        if found is not None:
            return found
        rows = self._rows("SELECT schema FROM schemas WHERE id = ?", schema_id)
        if not rows:
            raise SchemaNotFound(
                f"no schema has id {schema_id} in the registry at {str(self.path)!r}; the message "
                "was written against another registry"
            )
        schema: AvroSchema = json.loads(str(rows[0][0]))
        self._by_id[schema_id] = schema
        return schema

    def get_version(self, subject: str, version: Version) -> RegisteredSchema:
        """Version ``version`` of ``subject`` (``"latest"`` or -1 for the latest)."""
        if version == "latest" or version == -1:
            return self.latest(subject)
        rows = self._rows(
            "SELECT s.id, s.schema FROM subject_versions sv JOIN schemas s ON s.id = sv.schema_id "
            "WHERE sv.subject = ? AND sv.version = ?",
            subject,
            version,
        )
        if not rows:
            self._require_subject(subject)
            raise SchemaNotFound(
                f"subject {subject!r} has no version {version}; its versions are "
                f"{self.versions(subject)}"
            )
        schema_id, text = rows[0]
        return RegisteredSchema(subject, int(version), int(str(schema_id)), json.loads(str(text)))

    def latest(self, subject: str) -> RegisteredSchema:
        """The latest version of ``subject``."""
        versions = self.versions(subject)
        return self.get_version(subject, versions[-1])

    def versions(self, subject: str) -> list[int]:
        """The version numbers of ``subject``, oldest first; SchemaNotFound if it has none."""
        rows = self._rows(
            "SELECT version FROM subject_versions WHERE subject = ? ORDER BY version", subject
        )
        if not rows:
            raise SchemaNotFound(f"subject {subject!r} not found; register a schema under it first")
        return [int(str(v)) for (v,) in rows]

    def subjects(self) -> list[str]:
        """Every subject with at least one version, sorted."""
        return [
            str(s)
            for (s,) in self._rows("SELECT DISTINCT subject FROM subject_versions ORDER BY 1")
        ]

    def id_versions(self, schema_id: int) -> list[tuple[str, int]]:
        """Every (subject, version) that holds schema ``schema_id``."""
        self.get_schema(schema_id)
        rows = self._rows(
            "SELECT subject, version FROM subject_versions WHERE schema_id = ? ORDER BY 1, 2",
            schema_id,
        )
        return [(str(s), int(str(v))) for s, v in rows]

    def delete_subject(self, subject: str) -> list[int]:
        """Delete ``subject`` (versions and its own config); returns the versions it had."""
        with self._write() as db:
            rows = db.execute(
                "SELECT version FROM subject_versions WHERE subject = ? ORDER BY version",
                (subject,),
            ).fetchall()
            if not rows:
                raise SchemaNotFound(f"subject {subject!r} not found; nothing to delete")
            db.execute("DELETE FROM subject_versions WHERE subject = ?", (subject,))
            db.execute("DELETE FROM config WHERE subject = ?", (subject,))
        return [int(v) for (v,) in rows]

    def get_compatibility(self, subject: str | None = None) -> str:
        """The level in force for ``subject`` (its own, else the global default)."""
        with self._lock, self._sqlite_errors():
            return self._level(self._db, subject or "")

    def subject_compatibility(self, subject: str) -> str | None:
        """The level set on ``subject`` itself, or None when it follows the global default."""
        rows = self._rows("SELECT compatibility FROM config WHERE subject = ?", subject)
        return str(rows[0][0]) if rows else None

    def set_compatibility(self, level: str, subject: str | None = None) -> None:
        """Set ``subject``'s level, or the global default when ``subject`` is None."""
        value = Compatibility.of(level).value
        with self._write() as db:
            db.execute(
                "INSERT INTO config (subject, compatibility) VALUES (?, ?) "
                "ON CONFLICT (subject) DO UPDATE SET compatibility = excluded.compatibility",
                (subject or "", value),
            )

    def test_compatibility(
        self, subject: str, schema: AvroSchema, version: Version = "latest"
    ) -> list[str]:
        """The problems ``schema`` would have against ``version`` of ``subject``; empty if none."""
        schema = _valid(schema)
        against = self.get_version(subject, version).schema
        return check_compatibility(schema, [against], self.get_compatibility(subject))

    def test_compatibility_all(self, subject: str, schema: AvroSchema) -> list[str]:
        """The problems ``schema`` would have as the next version of ``subject``, by its rule."""
        schema = _valid(schema)
        with self._lock, self._sqlite_errors():
            existing = self._existing(self._db, subject)
        if not existing:
            self._require_subject(subject)
        return check_compatibility(schema, existing, self.get_compatibility(subject))

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    def _level(self, db: sqlite3.Connection, subject: str) -> str:
        row = db.execute(
            "SELECT compatibility FROM config WHERE subject IN (?, '') "
            "ORDER BY subject = '' LIMIT 1",
            (subject,),
        ).fetchone()
        return str(row[0]) if row else DEFAULT_COMPATIBILITY.value

    def _existing(self, db: sqlite3.Connection, subject: str) -> list[AvroSchema]:
        """The schemas of ``subject``'s versions, oldest first, in one query."""
        rows = db.execute(
            "SELECT s.schema FROM subject_versions sv JOIN schemas s ON s.id = sv.schema_id "
            "WHERE sv.subject = ? ORDER BY sv.version",
            (subject,),
        )
        return [json.loads(text) for (text,) in rows]

    def _require_subject(self, subject: str) -> None:
        self.versions(subject)

    def __enter__(self) -> EmbeddedRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _valid(schema: AvroSchema) -> AvroSchema:
    """``schema`` parsed from JSON text if need be; SchemaError when it is not valid Avro."""
    schema = parse_schema_text(schema)
    parse(schema)
    return schema
