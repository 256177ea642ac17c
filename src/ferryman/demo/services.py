"""The demo's models, topics and services, wired by ``build()`` against one broker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Column, Float, MetaData, Table, Text, select

from ferryman.config import ServiceConfig
from ferryman.service.core import Service
from ferryman.topics import EntityTopic, EventTopic, RequestTopic


@dataclass
class Customer:
    id: int
    name: str
    tier: str = "standard"


@dataclass
class QuoteRequest:
    customer_id: int
    sku: str
    quantity: int


@dataclass
class Quote:
    sku: str
    unit_price: float
    total: float


@dataclass
class OrderPlaced:
    order_id: str
    customer_id: int
    sku: str
    quantity: int
    total: float


@dataclass
class Product:
    sku: str
    name: str
    price: float


@dataclass
class CategoryAssignment:
    id: str
    sku: str
    category: str


@dataclass
class EnrichedProduct:
    sku: str
    title: str
    price: float
    category: str


products_topic = EntityTopic("demo.products", Product, key="sku", partitions=3)
assignments_topic = EntityTopic("demo.category.assignments", CategoryAssignment, key="id")
enriched_topic = EntityTopic("demo.products.enriched", EnrichedProduct, key="sku", partitions=3)
customers_topic = EntityTopic("demo.customers", Customer, key="id", partitions=3)
quotes_topic = RequestTopic("demo.pricing.quote", QuoteRequest, reply=Quote, partitions=3)
orders_topic = EventTopic("demo.orders.placed", OrderPlaced, partition_key="order_id", partitions=3)

CUSTOMER_COPY = "customers_copy"
"""The orders service's mirror table of the customers."""

PRICES = {"kettle": 24.0, "teapot": 31.5, "mug": 6.25}
DISCOUNT = {"standard": 1.0, "gold": 0.9}

Say = Callable[[str, str], None]


PRODUCT_VIEW = Table(
    "product_view",
    MetaData(),
    Column("sku", Text, primary_key=True),
    Column("name", Text),
    Column("price", Float),
    Column("category", Text),
)
"""The catalog service's joined table: products write name and price, assignments category."""


@dataclass
class Demo:
    """The six services and what they saw."""

    customers: Service
    orders: Service
    pricing: Service
    analytics: Service
    catalog: Service
    storefront: Service
    shelf: dict[str, EnrichedProduct] = field(default_factory=dict)
    """The enriched products the storefront service consumed, last per sku."""
    enriched_records: int = 0
    copied: dict[int, tuple[str, str]] = field(default_factory=dict)
    """The orders service's mirror table of the customers, as the demo ended."""
    revenue: dict[int, float] = field(default_factory=dict)
    events_seen: int = 0

    @property
    def services(self) -> list[Service]:
        return [
            self.customers,
            self.orders,
            self.pricing,
            self.analytics,
            self.catalog,
            self.storefront,
        ]

    def customer_copy(self) -> dict[int, tuple[str, str]]:
        """The orders service's copy of the customers: its mirror table, read now."""
        table = self.orders.database.metadata.tables[CUSTOMER_COPY]
        with self.orders.database.engine.connect() as conn:
            return {r.id: (r.name, r.tier) for r in conn.execute(select(table))}


def build(broker: str, say: Say) -> Demo:
    """Six services sharing ``broker``; ``say(service, text)`` reports what flows."""
    fast = ServiceConfig(commit_interval=0.05)
    demo = Demo(
        customers=Service("customers", broker=broker, config=fast),
        orders=Service("orders", broker=broker, config=fast),
        pricing=Service("pricing", broker=broker, config=fast),
        analytics=Service("analytics", broker=broker, config=fast),
        catalog=Service("catalog", broker=broker, config=fast),
        storefront=Service("storefront", broker=broker, config=fast),
    )

    # What each service sends, declared so that `ferryman lint` and `ferryman docs` see it.
    demo.customers.produces(customers_topic)
    demo.orders.produces(orders_topic, quotes_topic)
    demo.pricing.produces(products_topic, assignments_topic)

    # The orders service keeps its own copy of the customers: a table in its own database
    # (an SQLite file beside the broker's), upserted per record, a tombstone deleting the row.
    demo.orders.mirror(customers_topic, table=CUSTOMER_COPY)

    @demo.pricing.responder(quotes_topic)
    async def quote(req: QuoteRequest) -> Quote:
        if req.sku not in PRICES:
            raise KeyError(f"no price for {req.sku!r}")
        await asyncio.sleep(0.05)  # pricing takes a moment: the receipt ack has already gone back
        tier = "gold" if req.customer_id == 1 else "standard"
        unit = round(PRICES[req.sku] * DISCOUNT[tier], 2)
        say("pricing", f"quote {req.quantity} x {req.sku} for customer {req.customer_id}: {unit}")
        return Quote(req.sku, unit, round(unit * req.quantity, 2))

    @demo.analytics.on(orders_topic, batch=100)
    async def count(events: list[OrderPlaced]) -> None:
        for e in events:
            demo.revenue[e.customer_id] = demo.revenue.get(e.customer_id, 0.0) + e.total
        demo.events_seen += len(events)
        say("analytics", f"batch of {len(events)} order event(s); {demo.events_seen} so far")

    # The catalog joins products (keyed by sku) with category assignments (keyed by assignment
    # id, carrying the sku) by partial writes to one table, and republishes the joined rows
    # once a second: however fast the prices change, at most one record per sku per second.
    demo.catalog.mirror(products_topic, into=PRODUCT_VIEW)
    demo.catalog.mirror(assignments_topic, into=PRODUCT_VIEW, fields=["category"], key="sku")

    def enrich(row: dict[str, object], children: object) -> EnrichedProduct:
        say("catalog", f"republishes {row['sku']}: {row['name']} in {row['category']}")
        return EnrichedProduct(
            str(row["sku"]),
            str(row["name"]).title(),
            float(str(row["price"])),
            str(row["category"]),
        )

    demo.catalog.source(enriched_topic, from_=PRODUCT_VIEW, every="1s", build=enrich)

    @demo.storefront.on(enriched_topic)
    async def shelve(product: EnrichedProduct) -> None:
        demo.shelf[product.sku] = product
        demo.enriched_records += 1

    return demo
