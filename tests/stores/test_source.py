"""Entity sources: ORM inserts, updates and deletes publish upserts and tombstones through the
outbox; changes to unwatched columns and rolled-back sessions publish nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import String, func, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import ferryman as fm
from ferryman.stores import Database
from ferryman.stores.outbox import outbox_table

from .outbox_helpers import wait_until
from .service_helpers import Customer, World, embedded_world, user_db, world

__all__ = ["embedded_world", "user_db", "world"]  # fixtures, imported for the tests below


class Base(DeclarativeBase):
    pass


class CustomerRow(Base):
    __tablename__ = "customers_src"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(100), nullable=True)
    visits: Mapped[int] = mapped_column(default=0)  # not watched: counting visits is not news


class NoEmailRow(Base):
    __tablename__ = "no_email"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))


def collect(world: World, topic: fm.EntityTopic[Customer]) -> tuple[fm.Service, list[Any]]:
    reader = world.service("reader")
    seen: list[tuple[int, Customer | None]] = []

    @reader.on(topic)
    def handle(value: Customer | None, message: fm.Message[Customer]) -> None:
        seen.append((message.key, value))

    return reader, seen


def test_orm_changes_publish_upserts_and_tombstones_and_nothing_else(
    world: World, user_db: Database
) -> None:
    Base.metadata.create_all(user_db.engine)
    customers = fm.EntityTopic(world.topic("customers"), Customer, key="id", partitions=1)
    svc = world.service("owner")
    svc.source(customers, from_=CustomerRow, watch=["name", "email"])
    reader, seen = collect(world, customers)

    async def body() -> None:
        async with svc, reader:
            with user_db.sessions.begin() as s:
                s.add_all([CustomerRow(id=1, name="ada"), CustomerRow(id=2, name="bob")])
            with user_db.sessions.begin() as s:
                row = s.get(CustomerRow, 1)
                assert row is not None
                row.name = "ada l."
            with user_db.sessions.begin() as s:
                row = s.get(CustomerRow, 1)
                assert row is not None
                row.visits += 1  # unwatched: nothing
            with user_db.sessions() as s:
                s.add(CustomerRow(id=3, name="phantom"))
                s.flush()  # the hook wrote an outbox row, rolled back with the session
                s.rollback()
            with user_db.sessions.begin() as s:
                row = s.get(CustomerRow, 2)
                s.delete(row)
            with user_db.sessions.begin() as s:
                s.add(CustomerRow(id=9, name="last"))  # the sentinel: everything before is in
            await asyncio.to_thread(
                wait_until, lambda: any(k == 9 for k, _ in seen), 30, "the sentinel"
            )

    asyncio.run(body())
    assert seen == [
        (1, Customer(1, "ada")),
        (2, Customer(2, "bob")),
        (1, Customer(1, "ada l.")),
        (2, None),
        (9, Customer(9, "last")),
    ]


def test_republish_backfills_the_table_and_bulk_updates_are_not_published(
    embedded_world: World, user_db: Database
) -> None:
    world = embedded_world
    Base.metadata.create_all(user_db.engine)
    customers = fm.EntityTopic(world.topic("customers"), Customer, key="id", partitions=1)
    svc = world.service("owner")
    svc.source(customers, from_=CustomerRow, to_value=lambda r: Customer(r.id, r.name.upper()))
    reader, seen = collect(world, customers)

    async def body() -> None:
        async with svc, reader:
            with user_db.sessions.begin() as s:
                s.add_all([CustomerRow(id=i, name=f"c{i}") for i in range(3)])
            with user_db.sessions.begin() as s:
                s.execute(update(CustomerRow).values(name="bulk"))  # bypasses the unit of work
            assert await asyncio.to_thread(svc.republish, customers) == 3
            await asyncio.to_thread(wait_until, lambda: len(seen) >= 6, 30, "6 records")

    asyncio.run(body())
    assert [v for _, v in seen] == [
        *(Customer(i, f"C{i}") for i in range(3)),
        *(Customer(i, "BULK") for i in range(3)),
    ]


def test_source_declarations_are_checked(embedded_world: World) -> None:
    svc = embedded_world.service("owner")
    customers = fm.EntityTopic(embedded_world.topic("customers"), Customer, key="id")
    with pytest.raises(fm.ConfigError, match="watch names 'nickname'"):
        svc.source(customers, from_=CustomerRow, watch=["nickname"])
    with pytest.raises(fm.ConfigError, match=r"one string; .* watch=\['name'\]"):
        svc.source(customers, from_=CustomerRow, watch="name")
    with pytest.raises(fm.ConfigError, match="ORM mapped class"):
        svc.source(customers, from_=Customer)
    events = fm.EventTopic(embedded_world.topic("events"), Customer)
    with pytest.raises(fm.ConfigError, match="entity topic"):
        svc.source(events, from_=CustomerRow)  # type: ignore[arg-type]
    with pytest.raises(fm.ConfigError, match="no source"):
        svc.republish(customers)
    with pytest.raises(fm.ConfigError, match="has no 'email' for Customer"):
        svc.source(customers, from_=NoEmailRow)
    svc.source(customers, from_=CustomerRow)
    with pytest.raises(fm.ConfigError, match="already sources"):
        svc.source(customers, from_=CustomerRow)


def test_a_relative_sqlite_path_is_the_services_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    world = World("embedded:broker.db", "embedded:registry.db", "sqlite:///db/service.db")
    customers = fm.EntityTopic(world.topic("customers"), Customer, key="id")
    svc = world.service("owner", relay=False)
    svc.source(customers, from_=CustomerRow)
    db = Database("sqlite:///db/service.db")  # the user's engine, on the path as written
    try:
        Base.metadata.create_all(db.engine)
        with db.sessions.begin() as s:
            s.add(CustomerRow(id=1, name="ada"))
        with db.begin() as conn:
            assert conn.scalar(select(func.count()).select_from(outbox_table(db.metadata))) == 1
    finally:
        db.dispose()
        asyncio.run(svc.stop())
