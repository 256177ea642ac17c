"""A Service end to end in one process: publish, delete, emit, handlers, headers, topics."""

from __future__ import annotations

import asyncio
import math
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import pydantic
import pytest
from tests.waiting import eventually

from ferryman.errors import ConfigError, SchemaError, TopicMismatch
from ferryman.records import TopicSpec
from ferryman.runtime.delivery import Delivery
from ferryman.runtime.headers import SOURCE
from ferryman.runtime.message import Message
from ferryman.topics import DAY_MS, EntityTopic, EventTopic

from .conftest import Env, run


@dataclass
class Customer:
    id: int
    name: str


@dataclass
class Placed:
    order_id: str
    amount: int


def test_entities_upsert_and_tombstone_reach_a_handler(env: Env) -> None:
    customers = EntityTopic(env.name("customers"), Customer, partitions=2)
    seen: list[tuple[object, Customer | None, bytes | None]] = []

    async def main() -> None:
        owner = env.service("owner")
        mirror = env.service("mirror")

        @mirror.on(customers)
        async def keep(customer: Customer | None, msg: Message[Customer]) -> None:
            seen.append((msg.key, customer, msg.header(SOURCE)))

        async with owner, mirror:
            await owner.publish(customers, Customer(1, "Ada"))
            await owner.publish(customers, Customer(2, "Grace"))
            await owner.publish(customers, Customer(1, "Ada L."))
            await owner.delete(customers, key=2)
            await eventually(lambda: len(seen) == 4, env.timeout, lambda: seen)

    run(main())
    by_key: dict[object, list[Customer | None]] = {}
    for key, value, _ in seen:
        by_key.setdefault(key, []).append(value)
    assert by_key == {
        1: [Customer(1, "Ada"), Customer(1, "Ada L.")],
        2: [Customer(2, "Grace"), None],
    }
    assert {source for _, _, source in seen} == {env.name("owner").encode()}


def test_events_in_batches_with_message_ids_and_fact_time(env: Env) -> None:
    placed = EventTopic(env.name("placed"), Placed, partition_key="order_id", partitions=3)
    got: list[Message[Placed]] = []
    # a fact of an hour ago, within the topic's retention, to the millisecond
    when = datetime.fromtimestamp(int(time.time()) - 3600, UTC)

    async def main() -> None:
        shop = env.service("shop")
        stats = env.service("stats")

        @stats.on(placed, batch=50)
        def count(values: list[Placed], msgs: list[Message[Placed]]) -> None:
            assert len(values) == len(msgs) <= 50
            got.extend(msgs)

        async with shop, stats:
            for i in range(200):
                await shop.emit(placed, Placed(f"o-{i % 7}", i), timestamp=when)
            await eventually(lambda: len(got) == 200, env.timeout, lambda: len(got))

    run(main())
    assert sorted(m.value.amount for m in got if m.value) == list(range(200))
    ids = {m.message_id for m in got}
    assert len(ids) == 200
    assert None not in ids
    assert {m.timestamp for m in got} == {int(when.timestamp() * 1000)}
    for key in {m.key for m in got}:
        amounts = [m.value.amount for m in got if m.key == key and m.value]
        assert amounts == sorted(amounts), f"order of key {key} not kept"


def test_sync_handlers_run_off_the_event_loop(env: Env) -> None:
    placed = EventTopic(env.name("placed"), Placed, partitions=1)
    threads: set[str] = set()

    async def main() -> None:
        svc = env.service("svc")

        @svc.on(placed)
        def handle(event: Placed) -> None:
            threads.add(threading.current_thread().name)

        async with svc:
            await svc.emit(placed, Placed("o", 1))
            await eventually(lambda: threads, env.timeout)

    run(main())
    assert threading.main_thread().name not in threads


def test_blocking_forms_work_without_an_event_loop(env: Env) -> None:
    customers = EntityTopic(env.name("customers"), Customer, partitions=1)
    svc = env.service("blocking")
    meta = svc.publish(customers, Customer(5, "Ed")).result()
    tomb = svc.delete(customers, 5).result()
    assert (meta.topic, tomb.offset) == (customers.name, meta.offset + 1)
    run(svc.stop())


def test_values_are_checked_before_anything_is_sent(env: Env) -> None:
    customers = EntityTopic(env.name("customers"), Customer, partitions=1)
    placed = EventTopic(env.name("placed"), Placed)
    svc = env.service("checks")
    try:
        with pytest.raises(SchemaError, match="carries Customer, not Placed"):
            svc.publish(customers, Placed("x", 1)).result()  # type: ignore[misc]
        with pytest.raises(SchemaError, match="key 'five' is not a int"):
            svc.delete(customers, "five").result()
        with pytest.raises(ConfigError, match="use publish"):
            svc.emit(customers, Customer(1, "x")).result()  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="use emit"):
            svc.publish(placed, Placed("x", 1)).result()  # type: ignore[arg-type]
        with env.admin() as admin:
            assert admin.offsets(customers.name)[0].latest == 0
    finally:
        run(svc.stop())


def test_topics_are_created_on_start_and_a_mismatch_is_refused(env: Env) -> None:
    placed = EventTopic(env.name("placed"), Placed, partitions=3)
    clash = EventTopic(env.name("clash"), Placed, partitions=3)

    async def main() -> None:
        svc = env.service("creator")

        @svc.on(placed)
        async def h(e: Placed) -> None: ...

        async with svc:
            with env.admin() as admin:
                assert admin.describe_topic(placed.name).partitions == 3
                assert admin.describe_topic(placed.name + ".dlq").partitions == 3
                admin.create_topic(TopicSpec(clash.name, 1, {"cleanup.policy": "delete"}))
            with pytest.raises(TopicMismatch, match="change the declaration"):
                await svc.emit(clash, Placed("x", 1))

    run(main())


def test_one_handler_per_topic(env: Env) -> None:
    placed = EventTopic(env.name("placed"), Placed)
    svc = env.service("twice")

    @svc.on(placed)
    async def a(e: Placed) -> None: ...

    with pytest.raises(ConfigError, match="one handler per topic"):

        @svc.on(placed)
        async def b(e: Placed) -> None: ...


class Shipped(pydantic.BaseModel):
    parcel: uuid.UUID
    weight_kg: float
    note: str | None = None


def test_pydantic_models_flow_like_dataclasses(env: Env) -> None:
    shipped = EventTopic(env.name("shipped"), Shipped, partition_key="parcel", partitions=2)
    got: list[tuple[Shipped | None, object]] = []
    parcel = uuid.uuid4()

    async def main() -> None:
        svc = env.service("shipping")

        @svc.on(shipped)
        async def track(event: Shipped | None, msg: Message[Shipped]) -> None:
            got.append((event, msg.key))

        async with svc:
            await svc.emit(shipped, Shipped(parcel=parcel, weight_kg=1.5))
            await eventually(lambda: got, env.timeout)

    run(main())
    assert got == [(Shipped(parcel=parcel, weight_kg=1.5), parcel)]


@dataclass
class Supplier:
    id: int
    country: str


def test_none_is_refused_as_a_value_and_tombstones_go_through_delete(env: Env) -> None:
    customers = EntityTopic(env.name("customers"), Customer, partitions=1)
    unkeyed = EventTopic(env.name("unkeyed"), Placed, partitions=1)
    keyed = EventTopic(env.name("keyed"), Placed, partition_key="order_id", partitions=1)
    svc = env.service("nones")
    try:
        with pytest.raises(SchemaError, match=r"carries Placed, not None; pass a Placed$"):
            svc.emit(unkeyed, None).result()  # type: ignore[misc]
        with pytest.raises(SchemaError, match="carries Placed, not None"):
            svc.emit(keyed, None).result()  # type: ignore[misc]
        with pytest.raises(SchemaError, match=r"not None; .*delete\(topic, key=\.\.\.\)"):
            svc.publish(customers, None).result()  # type: ignore[misc]
        svc.delete(customers, 1).result()  # the one way to a tombstone
        with env.admin() as admin:
            assert admin.offsets(customers.name)[0].latest == 1
            assert unkeyed.name not in admin.list_topics(), "nothing was sent"
    finally:
        run(svc.stop())


@pytest.mark.parametrize("when", [math.nan, math.inf, -math.inf, -1, "2024-01-01", True])
def test_a_timestamp_that_is_not_a_time_is_refused_clearly(env: Env, when: object) -> None:
    placed = EventTopic(env.name("placed"), Placed, partitions=1)
    svc = env.service("clock")
    try:
        with pytest.raises(ConfigError, match=r"timestamp=.* pass a datetime"):
            svc.emit(placed, Placed("x", 1), timestamp=when).result()  # type: ignore[arg-type]
    finally:
        run(svc.stop())


def test_one_topic_name_declared_with_two_models_is_refused(env: Env) -> None:
    name = env.name("partners")
    as_customers = EntityTopic(name, Customer, partitions=1)
    as_suppliers = EntityTopic(name, Supplier, partitions=1)
    svc = env.service("two-models")

    @svc.on(as_customers)
    async def keep(c: Customer) -> None: ...

    try:
        with pytest.raises(ConfigError, match=r"two declarations .*Customer.*Supplier"):
            svc.publish(as_suppliers, Supplier(1, "NZ")).result()
        with pytest.raises(ConfigError, match=r"two declarations .*Customer.*Supplier"):
            svc.publish(as_suppliers, Supplier(1, "NZ"), timestamp=0).result()
        # the same model declared twice is the same topic
        svc.publish(EntityTopic(name, Customer, partitions=1), Customer(1, "Ada")).result()
    finally:
        run(svc.stop())
    other = env.service("two-models-b")
    name = env.name("vendors")
    other.publish(
        EntityTopic(name, Supplier), Supplier(2, "NO")
    ).result()  # sent first: it is bound
    try:
        with pytest.raises(ConfigError, match=r"Supplier.*Customer"):

            @other.on(EntityTopic(name, Customer))
            async def keep_too(c: Customer) -> None: ...

    finally:
        run(other.stop())


def test_a_record_older_than_its_topics_retention_is_refused_unless_allowed(env: Env) -> None:
    placed = EventTopic(env.name("placed"), Placed, partitions=1, config={"retention.ms": DAY_MS})
    customers = EntityTopic(env.name("customers"), Customer, partitions=1)
    now = time.time() * 1000
    svc = env.service("backfill")
    try:
        with pytest.raises(
            ConfigError,
            match=rf"{placed.name}' keeps records for retention.ms=86400000 \(1.0 days\), but this "
            r"record's timestamp is 2.0 days old: .*allow_expired=True",
        ):
            svc.emit(placed, Placed("x", 1), timestamp=now - 2 * DAY_MS).result()
        svc.emit(placed, Placed("x", 2), timestamp=now - DAY_MS / 2).result()
        svc.emit(placed, Placed("x", 3), timestamp=now - 2 * DAY_MS, allow_expired=True).result()
        with env.admin() as admin:
            assert admin.offsets(placed.name)[0].latest == 2
        # compacted entity topics have no time retention
        svc.publish(customers, Customer(1, "Ada"), timestamp=now - 400 * DAY_MS).result()
    finally:
        run(svc.stop())


def test_sends_nobody_waited_for_are_flushed_when_the_service_stops(env: Env) -> None:
    placed = EventTopic(env.name("placed"), Placed, partitions=1)

    async def main() -> None:
        async with env.service("fire-and-forget") as svc:
            for i in range(200):
                svc.emit(placed, Placed("o", i))  # neither awaited nor blocked on

    run(main())
    with env.admin() as admin:
        assert admin.offsets(placed.name)[0].latest == 200


def test_a_delivery_is_awaitable_and_blocking(env: Env) -> None:
    customers = EntityTopic(env.name("customers"), Customer, partitions=1)

    async def main() -> None:
        async with env.service("both") as svc:
            delivery = svc.publish(customers, Customer(1, "Ada"))
            assert isinstance(delivery, Delivery)
            first = await delivery
            assert delivery.result() == first, "awaiting and blocking give the same metadata"
            second = await asyncio.to_thread(svc.publish(customers, Customer(2, "Bo")).result)
            assert (first.offset, second.offset) == (0, 1)

    run(main())
