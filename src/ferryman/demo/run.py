"""``ferryman demo``: run the four demo services, print what flows, and check the outcome."""

from __future__ import annotations

import asyncio
import signal
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ferryman.broker import open_broker
from ferryman.demo.services import (
    PRICES,
    CategoryAssignment,
    Customer,
    Demo,
    OrderPlaced,
    Product,
    QuoteRequest,
    assignments_topic,
    build,
    customers_topic,
    orders_topic,
    products_topic,
    quotes_topic,
)
from ferryman.errors import FerrymanError, RemoteError
from ferryman.observability.http import HttpServer
from ferryman.records import RecordMetadata

COLORS = {
    "customers": "cyan",
    "orders": "green",
    "pricing": "magenta",
    "analytics": "yellow",
    "catalog": "blue",
    "storefront": "red",
}
CATEGORIES = {"kettle": "kitchen", "teapot": "tea", "mug": "tea"}
PRICE_UPDATES = 50
ORDERS = [(1, "kettle", 2), (2, "teapot", 1), (3, "mug", 6), (1, "mug", 4), (2, "kettle", 1)]


async def _until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise FerrymanError(f"demo: {what} did not happen within {timeout}s")
        await asyncio.sleep(0.02)


def _at(where: RecordMetadata) -> str:
    """Where a record went: its topic, partition and offset."""
    return f"[dim]-> {where.topic} partition {where.partition} offset {where.offset}[/]"


async def _scenario(demo: Demo, say: Callable[[str, str], None]) -> None:
    people = [Customer(1, "Ada", "gold"), Customer(2, "Grace"), Customer(3, "Linus")]
    for c in people:
        where = await demo.customers.publish(customers_topic, c)
        say("customers", f"published customer {c.id} {c.name!r} {_at(where)}")
    await _until(lambda: len(demo.customer_copy()) == 3, "orders' copy of the customers")
    say("orders", "its mirror table customers_copy holds customers 1, 2 and 3")

    for n, (customer_id, sku, quantity) in enumerate(ORDERS, start=1):
        say("orders", f"asks pricing for a quote: {quantity} x {sku} (with a receipt ack)")
        pending = demo.orders.request(
            quotes_topic, QuoteRequest(customer_id, sku, quantity), timeout=10, ack=True
        )
        await pending.accepted
        say("orders", f"quote request {n} accepted by pricing")
        q = await pending
        name = demo.customer_copy()[customer_id][0]
        event = OrderPlaced(f"o-{n}", customer_id, sku, quantity, q.total)
        where = await demo.orders.emit(orders_topic, event)
        say(
            "orders",
            f"order o-{n}: {name} buys {quantity} x {sku} for {q.total}, emitted {_at(where)}",
        )

    try:
        await demo.orders.request(quotes_topic, QuoteRequest(3, "anvil", 1), timeout=10)
    except RemoteError as exc:
        say("orders", f"quote for an unknown sku refused: {exc.remote_type}: {exc.remote_message}")

    where = await demo.customers.delete(customers_topic, key=3)
    say("customers", f"deleted customer 3 (tombstone) {_at(where)}")
    await _until(lambda: 3 not in demo.customer_copy(), "the tombstone reaching orders")
    say("orders", "customer 3 deleted (tombstone) -> its row left the mirror table")
    demo.copied = demo.customer_copy()
    await _until(lambda: demo.events_seen == len(ORDERS), "analytics seeing every order")
    await _catalog(demo, say)


async def _catalog(demo: Demo, say: Callable[[str, str], None]) -> None:
    """Products and category assignments, keyed differently, joined into enriched products."""
    placed = []
    for sku, price in PRICES.items():
        where = await demo.pricing.publish(products_topic, Product(sku, sku, price))
        placed.append(f"{sku} to partition {where.partition}")
    say(
        "pricing",
        f"published products to {products_topic.name}, keyed by sku: {', '.join(placed)} "
        f"(murmur2 of the key, modulo {products_topic.partitions} partitions)",
    )
    for n, (sku, category) in enumerate(CATEGORIES.items(), start=1):
        await demo.pricing.publish(assignments_topic, CategoryAssignment(f"asg-{n}", sku, category))
    say("pricing", "published category assignments asg-1..3 (keyed by assignment id)")
    await _until(lambda: len(demo.shelf) == len(CATEGORIES), "enriched products on the shelf")
    before = demo.enriched_records
    updates = [
        demo.pricing.publish(products_topic, Product("kettle", "kettle", 24.0 + i / 100))
        for i in range(1, PRICE_UPDATES + 1)
    ]
    for d in updates:
        await d
    say("pricing", f"changed the kettle's price {PRICE_UPDATES} times in a burst")
    final = 24.0 + PRICE_UPDATES / 100
    await _until(lambda: demo.shelf["kettle"].price == final, "the kettle's last price")
    say(
        "storefront",
        f"{PRICE_UPDATES} price changes reached it as {demo.enriched_records - before} enriched "
        "record(s): one per second at most",
    )


async def _main(console: Console, directory: Path, http_port: int | None = None) -> Demo:
    def say(service: str, text: str) -> None:
        color = COLORS.get(service, "white")
        console.print(f"[{color}]{service:>9}[/] {text}", soft_wrap=True)

    demo = build(f"embedded:{directory / 'broker.db'}", say)
    server = None
    if http_port is not None:
        server = HttpServer(demo.services, http_port, loop=asyncio.get_running_loop())
        await asyncio.to_thread(server.start)
        console.print(
            f"[bold]metrics[/] on http://127.0.0.1:{server.bound_port}/metrics "
            "(/health/live, /health/ready)\n"
        )
    for svc in demo.services:
        await svc.start()
    try:
        await _scenario(demo, say)
        if server is not None:
            console.print(
                f"\n[bold]serving[/] http://127.0.0.1:{server.bound_port}/metrics until Ctrl-C"
            )
            await _until_signal()
    finally:
        for svc in demo.services:
            await svc.stop()
        if server is not None:
            await asyncio.to_thread(server.stop)
    return demo


async def _until_signal() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def main(
    action: Callable[[Console, Path], Coroutine[Any, Any, Demo]] = _main,
    *,
    keep: bool = False,
    http_port: int | None = None,
) -> Demo:
    """Run the demo in a fresh temporary directory, deleted afterwards unless ``keep``; raises
    if anything did not flow. With ``http_port``, serve the services' /metrics and health, and
    keep them running until Ctrl-C."""
    console = Console(highlight=False)
    if keep:
        directory = Path(tempfile.mkdtemp(prefix="ferryman-demo-"))
        return _run(console, directory, action, keep=True, http_port=http_port)
    with tempfile.TemporaryDirectory(prefix="ferryman-demo-") as tmp:
        return _run(console, Path(tmp), action, keep=False, http_port=http_port)


def _run(
    console: Console,
    directory: Path,
    action: Callable[[Console, Path], Coroutine[Any, Any, Demo]],
    *,
    keep: bool,
    http_port: int | None = None,
) -> Demo:
    console.print(f"[bold]ferryman demo[/] - embedded broker in {directory}\n", soft_wrap=True)
    if http_port is not None:
        run = _main(console, directory, http_port)
    else:
        run = action(console, directory)
    demo = asyncio.run(run)
    table = Table("customer", "revenue seen by analytics")
    for customer_id, total in sorted(demo.revenue.items()):
        table.add_row(str(customer_id), f"{total:.2f}")
    console.print()
    console.print(table)
    copy = Table("id", "name", "tier", title="orders' mirror table customers_copy")
    for customer_id, (name, tier) in sorted(demo.copied.items()):
        copy.add_row(str(customer_id), name, tier)
    console.print(copy)
    shelf = Table("sku", "title", "price", "category", title="storefront's enriched products")
    for p in sorted(demo.shelf.values(), key=lambda p: p.sku):
        shelf.add_row(p.sku, p.title, f"{p.price:.2f}", p.category)
    console.print(shelf)
    console.print(_topics(directory / "broker.db"))
    console.print(
        f"[bold green]ok[/]: {len(ORDERS)} orders priced by request/response, emitted as events "
        "and counted by analytics; customers mirrored as entities, one deleted by tombstone; "
        "products joined with their categories and republished once a second."
    )
    _next_steps(console, directory, keep)
    return demo


def _topics(broker_file: Path) -> Table:
    """The topics the services created, as the broker has them."""
    table = Table("topic", "partitions", "cleanup", "records", title="topics the services created")
    broker = open_broker(f"embedded:{broker_file}")
    admin = broker.admin()
    try:
        for name in admin.list_topics():
            info = admin.describe_topic(name)
            offsets = admin.offsets(name).values()
            records = sum(o.latest - o.earliest for o in offsets)
            table.add_row(
                name, str(info.partitions), info.config.get("cleanup.policy", ""), str(records)
            )
    finally:
        admin.close()
        broker.close()
    return table


def _next_steps(console: Console, directory: Path, keep: bool) -> None:
    source = Path(__file__).parent

    def line(text: str) -> None:  # commands and paths stay whole, to be copied
        console.print(text, soft_wrap=True)

    line("\n[bold]What to try next[/]")
    if keep:
        line(
            f"The broker's directory is kept: {directory} (delete it when done). Point the "
            "ferryman command at it, then look around:\n"
            f"  export FERRYMAN_BROKER=embedded:{directory / 'broker.db'}"
        )
    else:
        line(
            "The broker's directory is gone. Run [bold]ferryman demo --keep[/] to keep it, and "
            "it prints the line that points the ferryman command at it; then:"
        )
    for command, what in (
        ("ferryman topics describe demo.orders.placed", "offsets per partition, settings"),
        ("ferryman tail demo.customers --from earliest", "the entities, decoded"),
        ("ferryman groups describe analytics", "how far a service has read"),
        ("ferryman dlq list demo.pricing.quote.dlq", "dead letters, and why"),
    ):
        line(f"  {command:<48} # {what}")
    line(
        f"Read the code: {source / 'services.py'} (topics and services) and "
        f"{source / 'run.py'} (this scenario).\n"
        'Write your own: the README\'s "Two services, two terminals", then docs/tutorial.md.'
    )
