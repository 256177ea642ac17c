"""Joins through real Services (docs/joins.md): topics mirrored as parts of one table with
fields=, and source(from_=<joined table>, every=...) republishing it, on {embedded, Kafka} x
{SQLite, PostgreSQL}: the joined topic, read back and compacted, equals the join computed from
the sources' final states; and the output carries at most one record per key per window."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import BigInteger, Column, MetaData, Table, Text
from tests.waiting import eventually, wait_until

import ferryman as fm
from ferryman.errors import ConfigError
from ferryman.records import TopicPartition
from ferryman.runtime.snapshot import latest_state
from ferryman.service.joins import seconds

from .service_helpers import (
    World,
    embedded_world,
    world,
)

__all__ = ["embedded_world", "world"]  # fixtures, imported for the tests below


@dataclass
class Product:
    id: int
    name: str
    price: int


@dataclass
class Assignment:
    id: str
    product_id: int
    category: str


@dataclass
class Stock:
    sku: str
    product_id: int
    units: int


@dataclass
class Enriched:
    id: int
    name: str
    price: int
    category: str | None = None
    units: int | None = None


def view_table() -> Table:
    return Table(
        "product_view",
        MetaData(),
        Column("id", BigInteger, primary_key=True, autoincrement=False),
        Column("name", Text),
        Column("price", BigInteger),
        Column("category", Text),
        Column("units", BigInteger),
    )


class Catalog:
    """Three sources with different key schemas (int id, assignment id, SKU) and the joined
    output, declared in one World."""

    def __init__(self, world: World, every: str = "200ms", *, owner_last: bool = False) -> None:
        self.products = fm.EntityTopic(world.topic("products"), Product, key="id")
        self.assignments = fm.EntityTopic(world.topic("assignments"), Assignment, key="id")
        self.stock = fm.EntityTopic(world.topic("stock"), Stock, key="sku")
        self.enriched = fm.EntityTopic(world.topic("enriched"), Enriched, key="id")
        self.writer = world.service("catalog-writer")
        self.service = world.service("catalog")
        view = view_table()
        if not owner_last:
            self.service.mirror(self.products, into=view)  # the owner: every field but the key
        self.service.mirror(
            self.assignments, into=view, fields=["category"], key="product_id", required=False
        )
        if owner_last:
            self.service.mirror(self.products, into=view)
        self.service.mirror(
            self.stock, into=view, fields={"units": "units"}, key="product_id", required=False
        )
        self.service.source(self.enriched, from_=view, every=every)

    def joined(self) -> dict[Any, Any]:
        """The enriched topic read back from its start, compacted (tombstones drop the key)."""
        conn = self.writer._conn
        state = latest_state(conn.broker, conn.admin, conn.serde, self.enriched)
        return {k: v for k, v in state.items() if v is not None}


def test_the_joined_topic_equals_the_join_of_the_sources_final_states(world: World) -> None:
    asyncio.run(oracle_check(Catalog(world)))


def test_the_owner_may_be_declared_after_the_other_parts(embedded_world: World) -> None:
    asyncio.run(oracle_check(Catalog(embedded_world, owner_last=True)))


async def oracle_check(cat: Catalog) -> None:
    rng = random.Random(13)
    products: dict[int, Product | None] = {}
    categories: dict[int, str | None] = {}  # assignment "a<pid>" -> its product
    units: dict[int, int | None] = {}  # sku "s<pid>" -> its product
    async with cat.writer, cat.service:
        sends = []
        for _ in range(1500):
            pid = rng.randrange(40)
            what = rng.random()
            if what < 0.4:
                p = Product(pid, f"p{pid}-{rng.randrange(1000)}", rng.randrange(100))
                products[pid] = p
                sends.append(cat.writer.publish(cat.products, p))
            elif what < 0.45:
                products[pid] = None
                sends.append(cat.writer.delete(cat.products, pid))
            elif what < 0.7:
                c = rng.choice(["books", "tools", "toys"])
                categories[pid] = c
                sends.append(cat.writer.publish(cat.assignments, Assignment(f"a{pid}", pid, c)))
            elif what < 0.75:
                categories[pid] = None
                sends.append(cat.writer.delete(cat.assignments, f"a{pid}"))
            elif what < 0.95:
                u = rng.randrange(50)
                units[pid] = u
                sends.append(cat.writer.publish(cat.stock, Stock(f"s{pid}", pid, u)))
            else:
                units[pid] = None
                sends.append(cat.writer.delete(cat.stock, f"s{pid}"))
        for d in sends:
            await d
        expected = {
            pid: Enriched(p.id, p.name, p.price, categories.get(pid), units.get(pid))
            for pid, p in products.items()
            if p is not None
        }
        got = await eventually(
            lambda: (j := cat.joined()) == expected and j,
            60,
            lambda: f"the joined topic equal to the join of {len(expected)} products",
            ignore=(fm.FerrymanError,),
        )
        assert got == expected


async def hot_key(cat: Catalog) -> None:
    async with cat.writer, cat.service:
        sends = [cat.writer.publish(cat.products, Product(7, "seven", i)) for i in range(10_000)]
        for d in sends:
            await d
        await eventually(
            lambda: cat.joined().get(7) == Enriched(7, "seven", 9_999),
            60,
            "the last of 10,000 updates on the joined topic",
            ignore=(fm.FerrymanError,),
        )


def test_ten_thousand_updates_to_one_key_give_at_most_one_record_per_window(
    embedded_world: World,
) -> None:
    every = 0.5
    cat = Catalog(embedded_world, every=f"{int(every * 1000)}ms")
    asyncio.run(hot_key(cat))
    conn = cat.writer._conn
    bounds = conn.admin.offsets(cat.enriched.name)
    reader = conn.broker.consumer(None)
    reader.assign([TopicPartition(cat.enriched.name, p) for p in bounds])
    stamps: list[int] = []
    total = sum(b.latest - b.earliest for b in bounds.values())

    def read() -> bool:
        stamps.extend(r.timestamp for r in reader.poll(0.2))
        return len(stamps) >= total

    try:
        wait_until(read, 30, f"{total} records of the joined topic")
    finally:
        reader.close()
    span = (max(stamps) - min(stamps)) / 1000
    # one record per pass at most, and a pass starts at most once per window
    assert 1 <= len(stamps) <= span / every + 2, (len(stamps), span)


def test_every_needs_a_joined_table_and_a_joined_table_needs_every(
    embedded_world: World,
) -> None:
    svc = embedded_world.service("catalog")
    enriched = fm.EntityTopic(embedded_world.topic("enriched"), Enriched, key="id")
    view = view_table()
    with pytest.raises(ConfigError, match="every="):
        svc.source(enriched, from_=view, every="1s")
    products = fm.EntityTopic(embedded_world.topic("products"), Product, key="id")
    svc.mirror(products, into=view)
    svc.mirror(
        fm.EntityTopic(embedded_world.topic("a"), Assignment, key="id"),
        into=view,
        fields=["category"],
        key="product_id",
    )
    with pytest.raises(ConfigError, match="every='1s'"):
        svc.source(enriched, from_=view)
    with pytest.raises(ConfigError, match="'1s', '500ms'"):
        svc.source(enriched, from_=view, every="soon")


def test_republish_backfills_the_joined_rows_matching_where(embedded_world: World) -> None:
    cat = Catalog(embedded_world)

    async def populate() -> None:
        async with cat.writer, cat.service:
            for d in [cat.writer.publish(cat.products, Product(i, f"p{i}", i)) for i in range(5)]:
                await d
            await eventually(
                lambda: len(cat.joined()) == 5, 30, "5 joined products", ignore=(fm.FerrymanError,)
            )

    asyncio.run(populate())
    before = embedded_world.count(cat.enriched.name)
    seen: list[tuple[int, int]] = []
    try:
        count = cat.service.republish(
            cat.enriched.name, where="id < 3", progress=lambda n, t: seen.append((n, t)), rate=100
        )
    finally:
        asyncio.run(cat.service.stop())
    assert count == 3
    assert seen[-1] == (3, 3)
    assert embedded_world.count(cat.enriched.name) == before + 3
    with pytest.raises(ConfigError, match="where= and rate="):
        cat.writer.republish(cat.enriched, where="id < 3")


def test_a_cadence_is_seconds_or_text_with_a_unit() -> None:
    assert seconds(2, "every") == 2.0
    assert seconds("1s", "every") == 1.0
    assert seconds("500ms", "every") == 0.5
    assert seconds("2m", "every") == 120.0
    assert seconds("1.5", "every") == 1.5
    for bad in ["", "1h", "fast", True]:
        with pytest.raises(ConfigError, match="write seconds"):
            seconds(bad, "every")  # type: ignore[arg-type]
