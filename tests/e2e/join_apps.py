"""The service of the joins end-to-end tests, run as ``ferryman run join_apps:catalog`` (this
directory as the working directory): products (keyed by id) and category assignments (keyed by
assignment id, carrying the product id) joined into ``product_view`` and republished as enriched
products every 200 ms. Where things are comes from FERRYMAN_*; topic names from E2E_SUFFIX.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, MetaData, Table, Text

from ferryman.config import ServiceConfig
from ferryman.service import Service
from ferryman.topics import EntityTopic

SUFFIX = os.environ.get("E2E_SUFFIX", "x")
FAST = ServiceConfig(
    commit_interval=0.05,
    shutdown_timeout=10,
    consumer_config={"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"},
)


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
class Enriched:
    id: int
    name: str
    price: int
    category: str | None = None


products = EntityTopic(f"e2e.products.{SUFFIX}", Product, key="id", partitions=4)
assignments = EntityTopic(f"e2e.assignments.{SUFFIX}", Assignment, key="id", partitions=3)
enriched = EntityTopic(f"e2e.enriched.{SUFFIX}", Enriched, key="id", partitions=4)

view = Table(
    "product_view",
    MetaData(),
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("name", Text),
    Column("price", BigInteger),
    Column("category", Text),
)

catalog = Service(f"e2e-catalog-{SUFFIX}", config=FAST)
catalog.mirror(products, into=view)
catalog.mirror(assignments, into=view, fields=["category"], key="product_id", required=False)
catalog.source(enriched, from_=view, every="200ms")
