"""Service.mirror and transactional handlers, end to end through the consumer loop, on
{SQLite, PostgreSQL} x {embedded, Kafka}: the table equals the topic's final state, offsets live
in the database (resumed from there), poisoned records are dead-lettered and the rest applied,
and a handler's session commits with its record's offset."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, select, text, update
from sqlalchemy.orm import Session

import ferryman as fm
from ferryman.broker import open_broker
from ferryman.config import ServiceConfig
from ferryman.errors import MirrorSchemaError
from ferryman.records import Record, TopicPartition
from ferryman.runtime.message import Message
from ferryman.service import Service
from ferryman.stores import OFFSETS_TABLE

T = TypeVar("T")
FAST = ServiceConfig(commit_interval=0.05, backoff=0.01, backoff_max=0.05, shutdown_timeout=10)


@dataclass
class Customer:
    id: int
    name: str
    tier: str = "standard"


@dataclass
class CustomerV2:
    id: int
    name: str
    tier: str = "standard"
    email: str = "unknown"


@dataclass
class Env:
    broker: str
    registry: str
    database: str
    timeout: float
    suffix: str
    made: list[Service] = field(default_factory=list)

    def service(self, name: str, **config: Any) -> Service:
        svc = Service(
            f"{name}-{self.suffix}",
            broker=self.broker,
            registry=self.registry,
            database=self.database,
            config=replace(FAST, **config),
        )
        self.made.append(svc)
        return svc

    def close(self) -> None:
        """Close the database connections the test opened after its services stopped."""
        for svc in self.made:
            svc.database.dispose()

    def topic(self, model: type = Customer, name: str = "customers") -> fm.EntityTopic[Any]:
        return fm.EntityTopic(f"{name}.{self.suffix}", model, key="id", partitions=3)


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def env(request: pytest.FixtureRequest, tmp_path: Path, database_url: str) -> Iterator[Env]:
    registry = f"embedded:{tmp_path / 'registry.db'}"
    suffix = uuid.uuid4().hex[:8]
    if request.param == "kafka":
        bootstrap = request.getfixturevalue("kafka_bootstrap")
        made = Env(f"kafka://{bootstrap}", registry, database_url, 60.0, suffix)
    else:
        made = Env(f"embedded:{tmp_path / 'broker.db'}", registry, database_url, 20.0, suffix)
    yield made
    made.close()


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def eventually(check: Callable[[], Any], timeout: float, what: Callable[[], object]) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what()}")
        await asyncio.sleep(0.02)


def rows(svc: Service, table: Table) -> dict[int, tuple[Any, ...]]:
    with svc.database.engine.connect() as conn:
        return {r[0]: tuple(r[1:]) for r in conn.execute(select(table))}


async def publish_all(svc: Service, topic: fm.EntityTopic[Any], changes: list[Any]) -> None:
    for change in changes:
        if isinstance(change, int):
            await svc.delete(topic, key=change)
        else:
            await svc.publish(topic, change)


def final_state(changes: list[Any]) -> dict[int, tuple[Any, ...]]:
    state: dict[int, tuple[Any, ...]] = {}
    for change in changes:
        if isinstance(change, int):
            state.pop(change, None)
        else:
            state[change.id] = (change.name, change.tier)
    return state


def test_the_mirror_equals_the_topics_final_state_fresh_and_after_a_restart(env: Env) -> None:
    topic = env.topic()
    first: list[Customer | int] = [Customer(i, f"c{i}") for i in range(30)]
    first += [Customer(i, f"c{i}-v2", "gold") for i in range(0, 30, 3)] + [1, 4, 7]
    second: list[Customer | int] = [Customer(i, f"c{i}-v3") for i in range(25, 40)] + [0, 26]

    async def main() -> None:
        producer = env.service("owner")
        svc = env.service("copy")
        mirror = svc.mirror(topic)
        async with producer, svc:
            await publish_all(producer, topic, first)
            want = final_state(first)
            await eventually(
                lambda: rows(svc, mirror.table) == want,
                env.timeout,
                lambda: rows(svc, mirror.table),
            )
        # While the copy is down: more changes; it resumes from the offsets in its database.
        async with producer:
            await publish_all(producer, topic, second)
        again = env.service("copy")
        mirror = again.mirror(topic)
        async with again:
            want = final_state(first + second)
            await eventually(
                lambda: rows(again, mirror.table) == want,
                env.timeout,
                lambda: rows(again, mirror.table),
            )
            await eventually(lambda: again.lag()[topic.name].offsets == 0, env.timeout, again.lag)
            assert again.lag()[topic.name].seconds == 0.0

    run(main())


def test_stats_show_the_mirrors_lag_rising_while_records_wait_and_back_to_zero(env: Env) -> None:
    topic = env.topic()
    release = threading.Event()

    def held(c: Customer) -> dict[str, Any]:
        if c.name == "held":  # waits in the mirror's transaction until the test lets it go
            release.wait(60)
        return {"id": c.id, "name": c.name, "tier": c.tier}

    async def main() -> None:
        producer = env.service("owner")
        svc = env.service("copy")
        mirror = svc.mirror(topic, transform=held)
        assert svc.stats["mirror_lag_records"] == 0  # not started: nothing read, no broker call
        async with producer, svc:
            await publish_all(producer, topic, [Customer(i, f"c{i}") for i in range(6)])
            await eventually(
                lambda: len(rows(svc, mirror.table)) == 6, env.timeout, lambda: svc.stats
            )
            await eventually(
                lambda: svc.stats["mirror_lag_records"] == 0 and svc.stats["mirror_lag_ms"] == 0,
                env.timeout,
                lambda: svc.stats,
            )
            await publish_all(producer, topic, [Customer(i, "held") for i in range(6)])
            await eventually(
                lambda: svc.stats["mirror_lag_records"] == 6 and svc.stats["mirror_lag_ms"] > 0,
                env.timeout,
                lambda: svc.stats,
            )
            first = svc.stats["mirror_lag_ms"]
            await asyncio.sleep(0.05)
            assert svc.stats["mirror_lag_ms"] > first  # the seconds count on between reads
            release.set()
            await eventually(
                lambda: svc.stats["mirror_lag_records"] == 0 and svc.stats["mirror_lag_ms"] == 0,
                env.timeout,
                lambda: svc.stats,
            )

    try:
        run(main())
    finally:
        release.set()


def test_on_assignment_the_mirror_seeks_to_its_databases_offsets_not_the_groups(env: Env) -> None:
    topic = env.topic()

    async def main() -> None:
        producer = env.service("owner")
        svc = env.service("copy")
        mirror = svc.mirror(topic)
        async with producer, svc:
            await publish_all(producer, topic, [Customer(i, f"c{i}") for i in range(10)])
            want = final_state([Customer(i, f"c{i}") for i in range(10)])
            await eventually(
                lambda: rows(svc, mirror.table) == want,
                env.timeout,
                lambda: rows(svc, mirror.table),
            )
        # The group has committed the end of every partition; the database says "from 0" and a
        # row was changed behind the mirror's back: only reading from the database's offsets
        # (not the group's) applies the records again and restores the row.
        with svc.database.begin() as conn:
            conn.execute(text(f"UPDATE {OFFSETS_TABLE} SET next_offset = 0"))
            conn.execute(update(mirror.table).values(name="tampered"))
        again = env.service("copy")
        mirror = again.mirror(topic)
        async with again:
            await eventually(
                lambda: rows(again, mirror.table) == want,
                env.timeout,
                lambda: rows(again, mirror.table),
            )

    run(main())


def test_a_poisoned_record_is_dead_lettered_and_the_rest_of_its_batch_applied(env: Env) -> None:
    topic = env.topic()
    topic = fm.EntityTopic(topic.name, Customer, key="id", partitions=1)

    def to_row(c: Customer) -> dict[str, Any] | None:
        if c.name == "poison":
            raise ValueError("this customer cannot be mirrored")
        return {"id": c.id, "name": c.name, "tier": c.tier}

    changes = [Customer(i, "poison" if i == 5 else f"c{i}") for i in range(12)]

    async def main() -> None:
        producer = env.service("owner")
        svc = env.service("copy", retries=1)
        mirror = svc.mirror(topic, transform=to_row)
        # Everything is published before the mirror starts, so the poison sits inside a batch.
        async with producer:
            await publish_all(producer, topic, changes)
        async with svc:
            want = {k: v for k, v in final_state(changes).items() if k != 5}
            await eventually(
                lambda: rows(svc, mirror.table) == want,
                env.timeout,
                lambda: rows(svc, mirror.table),
            )
            await eventually(
                lambda: svc.stats["dead_lettered"] == 1, env.timeout, lambda: svc.stats
            )
        broker = open_broker(env.broker)
        consumer = broker.consumer(None)
        try:
            consumer.assign([TopicPartition(f"{topic.name}.dlq", 0)])
            got: list[Record] = []
            deadline = time.monotonic() + env.timeout
            while not got and time.monotonic() < deadline:
                got.extend(consumer.poll(0.1, 10))
            assert [r.offset for r in got] == [0]
            headers = {k: v.decode() for k, v in got[0].headers}
            assert headers["ferryman.dlq.offset"] == "5"
            assert "cannot be mirrored" in headers["ferryman.dlq.exception-message"]
        finally:
            consumer.close()
            broker.close()

    run(main())


def test_a_model_field_the_table_lacks_is_a_clear_error_until_the_migration(env: Env) -> None:
    v1 = env.topic()
    v2 = fm.EntityTopic(v1.name, CustomerV2, key="id", partitions=3)

    async def main() -> None:
        svc = env.service("copy")
        svc.mirror(v1)
        async with svc:
            pass  # creates the v1 table
        newer = env.service("copy")
        mirror = newer.mirror(v2)
        with pytest.raises(MirrorSchemaError, match="email") as raised:
            await newer.start()
        await newer.stop()
        assert raised.value.missing == ("email",)
        assert "alembic revision --autogenerate" in str(raised.value)
        # The migration Alembic autogenerates for it (tests/stores/test_alembic.py):
        # op.add_column(table, sa.Column('email', sa.Text(), nullable=False, server_default=...))
        from alembic.migration import MigrationContext
        from alembic.operations import Operations

        with newer.database.begin() as conn:
            Operations(MigrationContext.configure(conn)).add_column(
                mirror.table.name, Column("email", String(), nullable=True)
            )
        producer = env.service("owner")
        async with producer, newer:
            await producer.publish(v2, CustomerV2(1, "Ada", "gold", "ada@example.com"))
            await eventually(
                lambda: rows(newer, mirror.table).get(1) == ("Ada", "gold", "ada@example.com"),
                env.timeout,
                lambda: rows(newer, mirror.table),
            )

    run(main())


@dataclass
class Order:
    id: int
    amount: int


def test_a_transactional_handler_commits_its_session_with_the_records_offset(env: Env) -> None:
    orders = fm.EventTopic(f"orders.{env.suffix}", Order, partition_key="id", partitions=2)
    meta = MetaData()
    seen = Table(
        "seen",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("amount", Integer),
    )
    failed_once: set[int] = set()

    async def main() -> None:
        producer = env.service("shop")
        svc = env.service("books", retries=1)
        meta.create_all(svc.database.engine)

        @svc.on(orders)
        def book(order: Order, session: Session) -> None:
            session.execute(seen.insert().values(id=order.id, amount=order.amount))
            if order.id % 7 == 0 and order.id not in failed_once:
                failed_once.add(order.id)  # fails after writing: the write must roll back
                raise RuntimeError("try again")
            if order.id == 13:
                raise RuntimeError("order 13 is always refused")

        async with producer, svc:
            for i in range(40):
                await producer.emit(orders, Order(i, i * 10))
            want = {i: (i * 10,) for i in range(40) if i != 13}
            await eventually(lambda: rows(svc, seen) == want, env.timeout, lambda: rows(svc, seen))
            await eventually(
                lambda: svc.stats["dead_lettered"] == 1, env.timeout, lambda: svc.stats
            )
        # The offsets were saved with the rows: every record once (tests/stores/test_routes.py
        # shows a redelivered run skipped).
        with svc.database.begin() as conn:
            stored: dict[int, int] = dict(
                conn.execute(text(f"SELECT partition, next_offset FROM {OFFSETS_TABLE}")).all()
            )
        assert sum(stored.values()) == 40

    run(main())


def test_a_handler_may_take_the_message_and_a_session_annotated_by_type(env: Env) -> None:
    orders = fm.EventTopic(f"orders.{env.suffix}", Order, partition_key="id", partitions=1)
    meta = MetaData()
    log = Table("log", meta, Column("offset", Integer, primary_key=True, autoincrement=False))

    async def main() -> None:
        producer = env.service("shop")
        svc = env.service("books")
        meta.create_all(svc.database.engine)

        @svc.on(orders)
        def book(order: Order, msg: Message[Order], db: Session) -> None:
            db.execute(log.insert().values(offset=msg.offset))

        async with producer, svc:
            for i in range(5):
                await producer.emit(orders, Order(i, i))
            await eventually(lambda: len(rows(svc, log)) == 5, env.timeout, lambda: rows(svc, log))

    run(main())


def test_reconcile_finds_missing_extra_and_differing_keys(env: Env) -> None:
    topic = env.topic()
    changes: list[Customer | int] = [Customer(i, f"c{i}") for i in range(20)] + [3]

    async def main() -> None:
        producer = env.service("owner")
        svc = env.service("copy")
        mirror = svc.mirror(topic)
        async with producer, svc:
            await publish_all(producer, topic, changes)
            want = final_state(changes)
            await eventually(
                lambda: rows(svc, mirror.table) == want,
                env.timeout,
                lambda: rows(svc, mirror.table),
            )
        [clean] = await asyncio.to_thread(svc.reconcile)
        assert (clean.keys, clean.rows, clean.drifted) == (19, 19, False)
        with svc.database.begin() as conn:
            conn.execute(update(mirror.table).where(mirror.table.c.id == 7).values(name="x"))
            conn.execute(mirror.table.delete().where(mirror.table.c.id.in_([1, 2])))
            conn.execute(mirror.table.insert().values(id=3, name="ghost", tier="standard"))
        seen: list[tuple[int, int]] = []
        [drift] = await asyncio.to_thread(
            svc.reconcile, topic.name, lambda done, total: seen.append((done, total))
        )
        assert (drift.missing, drift.extra, drift.differing) == (2, 1, 1)
        assert (drift.missing_samples, drift.extra_samples, drift.differing_samples) == (
            [1, 2],
            [3],
            [7],
        )
        assert seen[-1] == (len(changes), len(changes))

    run(main())
