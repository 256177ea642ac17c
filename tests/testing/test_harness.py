"""The ferryman fixture in this repository's own tests: drain, sent, assert_sent, call, clock."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import pytest
from sqlalchemy import Column, Float, Integer, MetaData, Table, Text
from sqlalchemy.orm import Session
from tests.waiting import eventually

import ferryman as fm
from ferryman.testing import FakeClock, Harness, assert_sent, call, drain, message, sent


@dataclass
class OrderPlaced:
    order_id: str
    customer_id: int
    total_cents: int


@dataclass
class Invoice:
    order_id: str
    amount_cents: int
    note: str = ""


order_placed = fm.EventTopic(
    "testing.orders.placed", OrderPlaced, partition_key="order_id", partitions=3
)
invoices = fm.EventTopic("testing.billing.invoices", Invoice, partition_key="order_id")


def billing_service(ferryman: Harness, **config: object) -> fm.Service:
    billing = ferryman.service("billing", config=fm.ServiceConfig(**config))  # type: ignore[arg-type]

    @billing.on(order_placed)
    async def invoice(event: OrderPlaced) -> None:
        await billing.emit(invoices, Invoice(event.order_id, event.total_cents))

    return billing


async def test_drain_waits_for_every_handler_and_sent_decodes(ferryman: Harness) -> None:
    billing = billing_service(ferryman)
    async with ferryman.started(billing):
        for i in range(30):
            await billing.emit(order_placed, OrderPlaced(f"o-{i}", i, 100 * i))
        await drain()
        got = sent(invoices)
        assert sorted(m.value.order_id for m in got if m.value) == sorted(
            f"o-{i}" for i in range(30)
        )
        assert len(sent(order_placed)) == 30
        m = assert_sent(invoices, Invoice("o-7", 700), key="o-7")
        assert m.topic == "testing.billing.invoices"
        assert_sent(invoices, {"amount_cents": 2900})
        assert_sent(invoices, lambda v: v.amount_cents > 2800)


async def test_assert_sent_shows_the_closest_record_and_its_differences(ferryman: Harness) -> None:
    billing = billing_service(ferryman)
    async with ferryman.started(billing):
        await billing.emit(order_placed, OrderPlaced("o-1", 7, 1250))
        await billing.emit(order_placed, OrderPlaced("o-2", 8, 990))
        await drain()
    with pytest.raises(AssertionError) as failed:
        assert_sent(invoices, Invoice("o-1", 1200, note="paid"), key="o-1")
    text = str(failed.value)
    assert "no record sent to 'testing.billing.invoices' matches Invoice(order_id='o-1'" in text
    assert "2 record(s) were sent" in text
    assert "amount_cents: expected 1200, sent 1250" in text
    assert "note: expected 'paid', sent ''" in text
    assert "order_id" not in text.split("differs in:")[1]  # the same field is not listed
    with pytest.raises(
        AssertionError, match=r"nothing was sent to 'nowhere'.*testing.billing.invoices"
    ):
        assert_sent(fm.EventTopic("nowhere", Invoice), {"order_id": "o-1"})


async def test_a_service_made_before_the_test_is_refused(ferryman: Harness) -> None:
    early = fm.Service("early", broker="embedded:" + str(ferryman.directory / "other.db"))
    with pytest.raises(fm.ConfigError, match="made before the test began"):
        async with ferryman.started(early):
            pass


async def test_call_a_handler_directly() -> None:
    seen: list[tuple[OrderPlaced, object]] = []

    def with_message(event: OrderPlaced, msg: fm.Message[OrderPlaced]) -> None:
        seen.append((event, msg.key))

    async def just_value(event: OrderPlaced) -> int:
        return event.total_cents

    assert await call(just_value, OrderPlaced("o-1", 7, 5)) == 5
    await call(with_message, OrderPlaced("o-2", 7, 5), key="o-2")
    await call(with_message, message(OrderPlaced("o-3", 7, 5), key="k", topic=order_placed))
    assert [(e.order_id, k) for e, k in seen] == [("o-2", "o-2"), ("o-3", "k")]


async def test_call_a_transactional_handler(ferryman: Harness) -> None:
    svc = ferryman.service("books")
    rows: list[str] = []

    def book(event: OrderPlaced, session: Session) -> None:
        rows.append(type(session).__name__)

    with pytest.raises(fm.ConfigError, match="pass service="):
        await call(book, OrderPlaced("o-1", 7, 5))
    await call(book, OrderPlaced("o-1", 7, 5), service=svc)
    assert rows == ["Session"]


async def test_retry_back_off_follows_the_fake_clock(
    ferryman: Harness, ferryman_clock: FakeClock
) -> None:
    attempts: list[str] = []
    # a topic of its own: on a shared Kafka (FERRYMAN_BROKER=kafka://...) topics outlive tests
    flaky_orders = fm.EventTopic(f"testing.flaky.{uuid.uuid4().hex[:8]}", OrderPlaced)
    svc = ferryman.service(
        "flaky", config=fm.ServiceConfig(retries=2, backoff=60.0, backoff_max=600.0)
    )

    @svc.on(flaky_orders)
    async def flaky(event: OrderPlaced) -> None:
        attempts.append(event.order_id)
        if len(attempts) < 3:
            raise RuntimeError("not yet")

    async with ferryman.started(svc):
        await svc.emit(flaky_orders, OrderPlaced("o-1", 7, 5))
        await ferryman_clock.until_waiting()  # the first back-off: 60 s on the fake clock
        assert attempts == ["o-1"]
        ferryman_clock.advance(60.0)
        await ferryman_clock.until_waiting()  # the second: 120 s
        assert attempts == ["o-1", "o-1"]
        ferryman_clock.advance(119.0)
        assert ferryman_clock.waiting == 1  # not due yet
        ferryman_clock.advance(1.0)
        await drain()
    assert attempts == ["o-1"] * 3
    assert svc.stats["dead_lettered"] == 0


def test_helpers_outside_a_test_say_what_to_do() -> None:
    with pytest.raises(RuntimeError, match="ask for the `ferryman` fixture"):
        sent(invoices)


@dataclass
class Product:
    sku: str
    name: str
    price: float


@dataclass
class Stock:
    sku: str
    stock: int


@dataclass
class Listing:
    sku: str
    title: str
    price: float


async def test_the_republish_cadence_follows_the_fake_clock(
    ferryman: Harness, ferryman_clock: FakeClock
) -> None:
    suffix = uuid.uuid4().hex[:8]  # topics of its own, for a shared Kafka
    products = fm.EntityTopic(f"testing.products.{suffix}", Product, key="sku")
    listings = fm.EntityTopic(f"testing.listings.{suffix}", Listing, key="sku")
    view = Table(
        "product_view",
        MetaData(),
        Column("sku", Text, primary_key=True),
        Column("name", Text),
        Column("price", Float),
        Column("stock", Integer),
    )
    stock = fm.EntityTopic(f"testing.stock.{suffix}", Stock, key="sku")
    catalog = ferryman.service("catalog")
    catalog.mirror(products, into=view)  # a join of two parts: products, and stock (optional)
    catalog.mirror(stock, into=view, fields=["stock"], key="sku", required=False)
    catalog.source(
        listings,
        from_=view,
        every="10s",
        build=lambda row, _: Listing(row["sku"], row["name"].title(), row["price"]),
    )
    async with ferryman.started(catalog):
        await ferryman_clock.until_waiting()  # the first pass ran (nothing to do) and waits 10 s
        for price in (1.0, 2.0, 3.0):
            await catalog.publish(products, Product("mug", "mug", price))
        await drain()  # mirrored into the view, marked for the next pass
        assert sent(listings) == []
        ferryman_clock.advance(9.0)
        assert sent(listings) == []  # 9 s on the fake clock: no pass yet
        ferryman_clock.advance(1.0)
        await eventually(lambda: sent(listings), 30, "the pass due at 10 s")
        await ferryman_clock.until_waiting()  # that pass is over: it waits for the next
    assert [m.value for m in sent(listings)] == [Listing("mug", "Mug", 3.0)]  # one per window


async def test_drain_waits_for_the_outbox_too(ferryman: Harness) -> None:
    orders = ferryman.service("orders-outbox")
    billing = billing_service(ferryman)
    async with ferryman.started(orders, billing):
        with orders.database.session() as session:  # the records go when this commits
            box = orders.outbox(session)
            for i in range(5):
                box.emit(order_placed, OrderPlaced(f"box-{i}", i, i))
        await drain(orders, billing)
        got = {m.value.order_id for m in sent(invoices) if m.value}
        assert {f"box-{i}" for i in range(5)} <= got


async def test_drain_raises_the_failure_of_a_service_that_stopped(ferryman: Harness) -> None:
    topic = fm.EventTopic(f"testing.stops.{uuid.uuid4().hex[:8]}", OrderPlaced)
    svc = ferryman.service("stops", config=fm.ServiceConfig(retries=0, on_error="stop"))

    @svc.on(topic)
    async def broken(event: OrderPlaced) -> None:
        raise RuntimeError("broken handler")

    async with ferryman.started(svc):
        await svc.emit(topic, OrderPlaced("o-1", 1, 1))
        with pytest.raises(fm.HandlerError, match="broken handler"):
            await drain()


async def test_drain_says_which_partitions_lag_when_it_gives_up(ferryman: Harness) -> None:
    topic = fm.EventTopic(f"testing.stuck.{uuid.uuid4().hex[:8]}", OrderPlaced, partitions=1)
    svc = ferryman.service("stuck")
    release = asyncio.Event()

    @svc.on(topic)
    async def stuck(event: OrderPlaced) -> None:
        await release.wait()

    async with ferryman.started(svc):
        await svc.emit(topic, OrderPlaced("o-1", 1, 1))
        with pytest.raises(AssertionError, match=rf"stuck at {topic.name}\[0\] 0 of 1"):
            await drain(timeout=1.0)
        release.set()
        await drain()
