"""The catalog join the joins and republisher tests share: products (keyed by id), category
assignments (keyed by assignment id, carrying ``product_id``) and order lines (keyed by line
id, children of a product), joined into ``product_view``."""

from __future__ import annotations

import json
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Column, MetaData, Table, Text

from ferryman.stores import Database, JoinedTable, MirrorRecord, Row

GROUP = "catalog"


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
class Line:
    id: str
    product_id: int
    qty: int


def tables(metadata: MetaData) -> tuple[Table, Table]:
    view = Table(
        "product_view",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=False),
        Column("name", Text),
        Column("price", BigInteger),
        Column("category", Text),
    )
    lines = Table(
        "product_lines",
        metadata,
        Column("line_id", Text, primary_key=True),
        Column("product_id", BigInteger, nullable=False, index=True),
        Column("qty", BigInteger),
    )
    return view, lines


def catalog(database: Database, *, required_category: bool = False) -> JoinedTable:
    """The joined table, created: products own the row; categories and lines join it."""
    view, lines = tables(database.metadata)
    joined = JoinedTable(database, view, owner="products")
    joined.part("products", ["name", "price"])
    joined.part("assignments", ["category"], key="product_id", required=required_category)
    joined.children("lines", lines, {"qty": "qty"}, parent="product_id", key="product_id")
    database.create_missing()
    return joined


def build(row: Row, children: Any) -> dict[str, Any]:
    """The enriched product: the row plus its lines as (line id, qty), in line id order."""
    lines = [[c["line_id"], c["qty"]] for c in children.get("product_lines", [])]
    return {
        "id": row["id"],
        "name": row["name"],
        "price": row["price"],
        "category": row["category"],
        "lines": lines,
    }


class Log:
    """A fake ``send``: collects (key, value) records in order, acknowledged at once."""

    def __init__(self) -> None:
        self.records: list[tuple[Any, Any]] = []

    def __call__(self, key: Any, value: Any) -> Future[None]:
        self.records.append((key, value))
        done: Future[None] = Future()
        done.set_result(None)
        return done

    def compacted(self) -> dict[Any, Any]:
        """The last value per key, tombstoned keys left out: what a compacted topic holds."""
        last: dict[Any, Any] = {}
        for key, value in self.records:
            last[key] = value
        return {k: v for k, v in last.items() if v is not None}


class Sources:
    """Hands out offsets per topic, as a log would."""

    def __init__(self) -> None:
        self.next: dict[str, int] = {}

    def rec(self, topic: str, key: Any, value: Any) -> MirrorRecord:
        offset = self.next.get(topic, 0)
        self.next[topic] = offset + 1
        return MirrorRecord(topic, 0, offset, key, value, 1_000 + offset)


def expected_join(
    products: dict[int, Product], assignments: dict[str, Assignment], lines: dict[str, Line]
) -> dict[int, dict[str, Any]]:
    """The join computed directly from the sources' final states."""
    out: dict[int, dict[str, Any]] = {}
    for pid, p in products.items():
        category = [a.category for a in assignments.values() if a.product_id == pid]
        own = sorted([line.id, line.qty] for line in lines.values() if line.product_id == pid)
        out[pid] = {
            "id": pid,
            "name": p.name,
            "price": p.price,
            "category": category[0] if category else None,
            "lines": own,
        }
    return out


def as_json(value: Any) -> bytes | None:
    return None if value is None else json.dumps(value, sort_keys=True).encode()
