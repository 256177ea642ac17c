"""Entity sources: an ORM model's inserts, updates and deletes become outbox records of an entity
topic, written by SQLAlchemy session events in the flushing transaction.

Covered: changes the ORM flushes (``session.add``, attribute changes, ``session.delete``).
Not covered: bulk statements (``session.execute(update(...))``, ``delete(...)``, ``insert(...)``)
and raw SQL, which bypass the unit of work; ``republish`` backfills after those.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from sqlalchemy import event, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Mapper, Session, UOWTransaction

from ferryman.errors import ConfigError
from ferryman.schema.models import avro_schema
from ferryman.stores.outbox import OutboxRecord
from ferryman.stores.producing import Encode
from ferryman.topics import EntityTopic, Topic

Write = Callable[[Session, list[OutboxRecord]], None]
"""Writes records into a session's transaction (the service's outbox)."""

REPUBLISH_BATCH = 500


class EntitySource:
    """Publishes the rows of ORM class ``model`` as entity ``topic``: insert and update an upsert,
    delete a tombstone; with ``watch``, only changes to those columns publish.

    ``owns(session)`` says whether a session writes to the database of the outbox (so that a
    service's source ignores sessions of other databases); ``to_value(row)`` maps a row to the
    topic's model (default: the model's fields read from same-named attributes).
    """

    def __init__(
        self,
        topic: EntityTopic[Any],
        model: type[Any],
        *,
        encode: Encode,
        write: Write,
        owns: Callable[[Session], bool],
        watch: Collection[str] | None = None,
        to_value: Callable[[Any], Any] | None = None,
    ) -> None:
        if not isinstance(topic, EntityTopic):
            raise ConfigError(
                f"source() publishes an entity topic, got {topic!r}; declare "
                "fm.EntityTopic(name, Model, key=...) (events of a table: emit through "
                "svc.outbox(session))"
            )
        mapper = sa_inspect(model, raiseerr=False)
        if not isinstance(mapper, Mapper):
            raise ConfigError(
                f"source({topic.name!r}, from_={model!r}): from_ must be a SQLAlchemy ORM mapped "
                "class (a DeclarativeBase subclass); for a plain table use poll_table()"
            )
        columns = set(mapper.column_attrs.keys())
        if isinstance(watch, str):
            raise ConfigError(
                f"source({topic.name!r}): watch={watch!r} is one string; pass a list of column "
                f"attribute names, e.g. watch=[{watch!r}]"
            )
        self.watch = None if watch is None else frozenset(watch)
        unknown = sorted(self.watch - columns) if self.watch is not None else []
        if unknown:
            raise ConfigError(
                f"source({topic.name!r}): watch names {', '.join(map(repr, unknown))}, which "
                f"{model.__name__} does not map (its columns: {', '.join(sorted(columns))}); "
                "pass a list of column attribute names, e.g. watch=['name', 'email']"
            )
        self.topic = topic
        self.model = model
        self.to_value = to_value or same_named(topic, model, set(mapper.attrs.keys()))
        self._encode = encode
        self._write = write
        self._owns = owns
        self._info_key = f"ferryman.source.{id(self)}"
        self._attached = False

    def attach(self) -> None:
        """Listen to every Session's flushes (filtered to this model and ``owns``)."""
        if not self._attached:
            event.listen(Session, "before_flush", self._before_flush)
            event.listen(Session, "after_flush", self._after_flush)
            self._attached = True

    def detach(self) -> None:
        """Stop listening; flushes after this publish nothing."""
        if self._attached:
            event.remove(Session, "before_flush", self._before_flush)
            event.remove(Session, "after_flush", self._after_flush)
            self._attached = False

    def _before_flush(self, session: Session, _ctx: UOWTransaction, _instances: Any) -> None:
        # Deleted rows are read before the flush: afterwards their attributes may be gone.
        deleted = [o for o in session.deleted if isinstance(o, self.model)]
        if deleted and self._owns(session):
            session.info[self._info_key] = [self._key_of(o) for o in deleted]
        else:
            session.info.pop(self._info_key, None)

    def _after_flush(self, session: Session, _ctx: UOWTransaction) -> None:
        # The new/dirty lists and attribute histories still show the flush's changes here, and
        # inserted rows have their generated keys.
        deleted_keys = session.info.pop(self._info_key, [])
        changed = [
            o
            for o in (*session.new, *session.dirty)
            if isinstance(o, self.model) and self._changed(session, o)
        ]
        if not changed and not deleted_keys:
            return
        if not self._owns(session):
            return
        records = [
            self._encode("publish", self.topic, self.to_value(o), None, None, False)
            for o in changed
        ]
        records += [self._encode("delete", self.topic, k, None, None, False) for k in deleted_keys]
        self._write(session, records)

    def _changed(self, session: Session, row: Any) -> bool:
        state = sa_inspect(row)
        if state.key is None or row in session.new:
            return True  # an insert always publishes
        if self.watch is None:
            return session.is_modified(row, include_collections=False)
        return any(state.attrs[name].history.has_changes() for name in self.watch)

    def _key_of(self, row: Any) -> Any:
        return self.topic.key_of(self.to_value(row))

    def republish(self, session: Session) -> int:
        """Write every row of the model into ``session``'s transaction as an upsert; returns how
        many (the backfill after bulk writes, or for a new consumer)."""
        count = 0
        batch: list[OutboxRecord] = []
        for row in session.scalars(select(self.model).execution_options(yield_per=REPUBLISH_BATCH)):
            batch.append(self._encode("publish", self.topic, self.to_value(row), None, None, False))
            if len(batch) >= REPUBLISH_BATCH:
                self._write(session, batch)
                count += len(batch)
                batch = []
        if batch:
            self._write(session, batch)
            count += len(batch)
        return count


def same_named(topic: Topic[Any], source: Any, attributes: Collection[str]) -> Callable[[Any], Any]:
    """``to_value`` that builds ``topic.model`` from the same-named attributes (or columns) of a
    row; ConfigError now if ``source`` lacks a field the model has."""
    schema = avro_schema(topic.model)
    fields = [f["name"] for f in schema["fields"]] if isinstance(schema, dict) else []
    missing = [f for f in fields if f not in attributes]
    if missing or not fields:
        raise ConfigError(
            f"{topic.name!r}: {getattr(source, '__name__', source)!r} has no "
            f"{', '.join(map(repr, missing)) or 'fields'} for {topic.model.__name__}'s "
            f"field(s); pass to_value=lambda row: {topic.model.__name__}(...) to map a row to "
            "the topic's model"
        )
    model = topic.model

    def to_value(row: Any) -> Any:
        get = row._mapping.__getitem__ if hasattr(row, "_mapping") else row.__getattribute__
        return model(**{name: get(name) for name in fields})

    return to_value
