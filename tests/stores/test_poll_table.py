"""``svc.poll_table``: a legacy table's changed rows are published while the service runs,
through the outbox in the transaction that moves the watermark."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    func,
    insert,
    select,
    update,
)

import ferryman as fm
from ferryman.stores import Database
from ferryman.stores.poller import pollers_table

from .outbox_helpers import wait_until
from .service_helpers import Customer, Noted, World, embedded_world, user_db, world

__all__ = ["embedded_world", "user_db", "world"]  # fixtures, imported for the tests below


def legacy_table() -> Table:
    return Table(
        "legacy_customers",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("name", String(100), nullable=False),
        Column("email", String(100), nullable=True),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    )


def collect(world: World, topic: fm.EntityTopic[Customer]) -> tuple[fm.Service, list[Any]]:
    reader = world.service("reader")
    seen: list[Customer | None] = []

    @reader.on(topic)
    def handle(value: Customer | None) -> None:
        seen.append(value)

    return reader, seen


def test_polled_rows_are_published_once_each_even_when_they_share_a_timestamp(
    world: World, user_db: Database
) -> None:
    table = legacy_table()
    table.metadata.create_all(user_db.engine)
    now = dt.datetime.now(dt.UTC)
    same = now - dt.timedelta(seconds=30)
    with user_db.begin() as conn:  # many rows share one updated_at: the id breaks the tie
        conn.execute(
            insert(table), [{"id": i, "name": f"c{i}", "updated_at": same} for i in range(25)]
        )
    customers = fm.EntityTopic(world.topic("customers"), Customer, key="id", partitions=2)
    svc = world.service("poller")
    svc.poll_table(table, customers, every=0.05, safety_delay=0.2)
    reader, seen = collect(world, customers)

    async def body() -> None:
        async with svc, reader:
            await asyncio.to_thread(wait_until, lambda: len(seen) >= 25, 30, "25 rows")
            with user_db.begin() as conn:
                conn.execute(
                    update(table)
                    .where(table.c.id == 3)
                    .values(name="changed", updated_at=dt.datetime.now(dt.UTC))
                )
            await asyncio.to_thread(
                wait_until, lambda: Customer(3, "changed") in seen, 30, "the update"
            )

    asyncio.run(body())
    assert sorted(c.id for c in seen if c is not None) == sorted([*range(25), 3])  # once each
    with user_db.begin() as conn:
        assert conn.scalar(select(func.count()).select_from(pollers_table(user_db.metadata))) == 1


def test_poller_to_value_and_event_topics(embedded_world: World, user_db: Database) -> None:
    world = embedded_world
    table = legacy_table()
    table.metadata.create_all(user_db.engine)
    old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    with user_db.begin() as conn:
        conn.execute(
            insert(table), [{"id": i, "name": f"n{i}", "updated_at": old} for i in range(3)]
        )
    noted = fm.EventTopic(world.topic("noted"), Noted, partition_key="id")
    svc = world.service("poller")
    svc.poll_table(table, noted, every=0.05, to_value=lambda r: Noted(r.id, r.name.upper()))
    reader = world.service("reader")
    seen: list[Noted] = []

    @reader.on(noted)
    def handle(value: Noted) -> None:
        seen.append(value)

    async def body() -> None:
        async with svc, reader:
            await asyncio.to_thread(wait_until, lambda: len(seen) >= 3, 30, "3 events")

    asyncio.run(body())
    assert sorted(seen, key=lambda n: n.id) == [Noted(i, f"N{i}") for i in range(3)]


def test_poll_table_declarations_are_checked(embedded_world: World) -> None:
    svc = embedded_world.service("poller")
    customers = fm.EntityTopic(embedded_world.topic("customers"), Customer, key="id")
    with pytest.raises(fm.ConfigError, match="every=0"):
        svc.poll_table(legacy_table(), customers, every=0)
    with pytest.raises(fm.ConfigError, match="updated_at='changed'"):
        svc.poll_table(legacy_table(), customers, updated_at="changed")
    bare = Table("bare", MetaData(), Column("id", Integer), Column("updated_at", DateTime))
    with pytest.raises(fm.ConfigError, match="to_value="):
        svc.poll_table(bare, customers)
