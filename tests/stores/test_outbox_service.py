"""The outbox through a Service: ``svc.outbox(session)`` writes in the caller's transaction, the
relay inside ``svc.start()`` publishes what committed, never what rolled back."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

import ferryman as fm
from ferryman.runtime.headers import MESSAGE_ID
from ferryman.stores import Database
from ferryman.stores.outbox import outbox_table

from .outbox_helpers import wait_until
from .service_helpers import (
    Customer,
    Noted,
    World,
    embedded_world,
    header,
    ids_and_sources,
    user_db,
    world,
)

__all__ = ["embedded_world", "user_db", "world"]  # fixtures, imported for the tests below


def outbox_rows(db: Database) -> int:
    with db.begin() as conn:
        return int(conn.scalar(select(func.count()).select_from(outbox_table(db.metadata))) or 0)


def test_committed_records_are_published_and_rolled_back_ones_never(
    world: World, user_db: Database
) -> None:
    customers = fm.EntityTopic(world.topic("customers"), Customer, key="id", partitions=3)
    noted = fm.EventTopic(world.topic("noted"), Noted, partition_key="id")
    svc = world.service("writer")

    async def body() -> None:
        async with svc:
            with user_db.sessions.begin() as session:
                session.execute(text("SELECT 1"))
                box = svc.outbox(session)
                box.publish(customers, Customer(1, "ada"))
                box.publish(customers, Customer(2, "bob"))
                box.delete(customers, 2)
                box.emit(noted, Noted(1, "hello"))
            with user_db.sessions() as session:
                svc.outbox(session).publish(customers, Customer(3, "phantom"))
                session.rollback()
            records = await asyncio.to_thread(world.read, customers.name, 3)
            events = await asyncio.to_thread(world.read, noted.name, 1)
            await asyncio.to_thread(
                wait_until, lambda: outbox_rows(user_db) == 0, 20, "the relay to delete its rows"
            )

        assert len(records) == 3
        assert len(events) == 1
        by_key: dict[bytes | None, list[bytes | None]] = {}
        for r in sorted(records, key=lambda r: r.offset):
            by_key.setdefault(r.key, []).append(r.value)
        # Customer 2: the upsert, then its tombstone, in commit order; nothing of customer 3.
        assert sorted(len(v) for v in by_key.values()) == [1, 2]
        [twice] = [v for v in by_key.values() if len(v) == 2]
        assert twice[0] is not None
        assert twice[1] is None
        ids, sources = ids_and_sources([*records, *events])
        assert None not in ids
        assert len(ids) == 4
        assert sources == {svc.name.encode()}

    asyncio.run(body())


def test_a_consumer_decodes_outbox_records_and_sees_their_message_ids(
    embedded_world: World, user_db: Database
) -> None:
    world = embedded_world
    noted = fm.EventTopic(world.topic("noted"), Noted, partition_key="id", partitions=2)
    writer = world.service("writer")
    reader = world.service("reader")
    seen: list[tuple[Noted, str]] = []

    @reader.on(noted)
    def handle(value: Noted, message: fm.Message[Noted]) -> None:
        ids = [v for k, v in message.headers if k == MESSAGE_ID]
        seen.append((value, ids[0].decode() if ids else ""))

    async def body() -> None:
        async with writer, reader:
            with user_db.sessions.begin() as session:
                box = writer.outbox(session)
                for i in range(10):
                    box.emit(noted, Noted(i, f"n{i}"))
            await asyncio.to_thread(wait_until, lambda: len(seen) >= 10, 30, "10 events handled")

    asyncio.run(body())
    assert sorted(v.id for v, _ in seen) == list(range(10))
    assert len({mid for _, mid in seen}) == 10
    assert all(seen_id for _, seen_id in seen)


def test_outbox_calls_are_checked_as_direct_sends_are(
    embedded_world: World, user_db: Database
) -> None:
    world = embedded_world
    customers = fm.EntityTopic(world.topic("customers"), Customer, key="id")
    noted = fm.EventTopic(
        world.topic("noted"), Noted, partition_key="id", config={"retention.ms": 60_000}
    )
    svc = world.service("checked", relay=False)
    try:
        with user_db.sessions.begin() as session:
            box = svc.outbox(session)
            with pytest.raises(fm.SchemaError, match="carries Customer, not Noted"):
                box.publish(customers, Noted(1, "x"))  # type: ignore[misc]
            with pytest.raises(fm.ConfigError, match="use emit"):
                box.publish(noted, Noted(1, "x"))  # type: ignore[arg-type]
            with pytest.raises(fm.ConfigError, match="use publish"):
                box.emit(customers, Customer(1, "x"))  # type: ignore[arg-type]
            with pytest.raises(fm.SchemaError, match="key 'one' is not a int"):
                box.delete(customers, "one")
            with pytest.raises(fm.ConfigError, match="not a time"):
                box.emit(noted, Noted(1, "x"), timestamp=-5)
            old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
            with pytest.raises(fm.ConfigError, match="retention"):
                box.emit(noted, Noted(1, "x"), timestamp=old)
            box.emit(noted, Noted(1, "x"), timestamp=old, allow_expired=True)
        assert outbox_rows(user_db) == 1  # only the last one was written
        with user_db.begin() as conn:
            stamp = conn.scalar(select(outbox_table(user_db.metadata).c.timestamp_ms))
        assert stamp == int(old.timestamp() * 1000)
    finally:
        asyncio.run(svc.stop())


def test_outbox_on_a_connection_and_headers_of_the_caller(
    embedded_world: World, user_db: Database
) -> None:
    world = embedded_world
    noted = fm.EventTopic(world.topic("noted"), Noted)
    svc = world.service("conn")

    async def body() -> None:
        async with svc:
            with user_db.begin() as conn:
                svc.outbox(conn).emit(noted, Noted(7, "x"), headers={"trace": "abc"})
            [record] = await asyncio.to_thread(world.read, noted.name, 1)
            assert header(record, "trace") == b"abc"
            assert header(record, MESSAGE_ID)

    asyncio.run(body())


def test_relay_false_leaves_rows_for_another_relay_and_run_relay_sends_them(
    embedded_world: World, user_db: Database
) -> None:
    world = embedded_world
    noted = fm.EventTopic(world.topic("noted"), Noted)
    svc = world.service("norelay", relay=False)
    relay_svc = world.service("relay-only")

    async def body() -> None:
        async with svc:
            with user_db.sessions.begin() as session:
                for i in range(5):
                    svc.outbox(session).emit(noted, Noted(i, "x"))
            # The service runs no relay: the rows stay.
            assert outbox_rows(user_db) == 5
            assert world.count(noted.name) == 0

    asyncio.run(body())
    stop = threading.Event()
    thread = threading.Thread(target=relay_svc.run_relay, args=(stop,))
    thread.start()
    try:
        records = world.read(noted.name, 5)
        wait_until(lambda: outbox_rows(user_db) == 0, 20, "the relay to delete its rows")
    finally:
        stop.set()
        thread.join(30)
    assert len(records) == 5


def test_relay_config_is_checked() -> None:
    with pytest.raises(fm.ConfigError, match="relay='yes'"):
        fm.ServiceConfig(relay="yes")  # type: ignore[arg-type]


def test_a_service_that_does_not_use_an_outbox_runs_no_relay_and_opens_no_database(
    tmp_path: Path,
) -> None:
    where = tmp_path / "db" / "service.db"
    svc = fm.Service(
        "plain",
        broker=f"embedded:{tmp_path / 'broker.db'}",
        database=f"sqlite:///{where}",
    )

    async def body() -> None:
        async with svc:
            assert not [t for t in threading.enumerate() if "relay" in t.name]

    asyncio.run(body())
    assert not where.exists()


def test_relay_true_publishes_what_other_processes_wrote_before_it_started(
    embedded_world: World, user_db: Database
) -> None:
    world = embedded_world
    noted = fm.EventTopic(world.topic("noted"), Noted, partitions=2)
    writer = world.service("writer", relay=False)
    with user_db.sessions.begin() as session:
        box = writer.outbox(session)
        for i in range(20):
            box.emit(noted, Noted(i, "x"))
    asyncio.run(writer.stop())
    relay = world.service("relay", relay=True)

    async def body() -> None:
        async with relay:
            await asyncio.to_thread(
                wait_until, lambda: outbox_rows(user_db) == 0, 20, "the relay to drain the outbox"
            )

    asyncio.run(body())
    assert len(world.read(noted.name, 20)) == 20


def test_stop_finishes_the_relays_round_so_every_sent_row_is_deleted(
    embedded_world: World, user_db: Database
) -> None:
    world = embedded_world
    noted = fm.EventTopic(world.topic("noted"), Noted, partitions=4)
    writer = world.service("writer", relay=False)
    total = 3000
    with user_db.sessions.begin() as session:
        box = writer.outbox(session)
        for i in range(total):
            box.emit(noted, Noted(i, "x"))
    asyncio.run(writer.stop())
    relay = world.service("relay", relay=True)

    async def body() -> None:
        await relay.start()
        await asyncio.to_thread(
            wait_until, lambda: world.count(noted.name) > 0, 20, "the relay to start sending"
        )
        await relay.stop()  # mid-stream, most likely mid-round

    asyncio.run(body())
    # Nothing sent and left behind: what is on the topic left the outbox, the rest waits there.
    assert world.count(noted.name) + outbox_rows(user_db) == total
