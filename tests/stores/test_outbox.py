"""The outbox: rows written in the caller's transaction, exactly as given, on both databases."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, select

from ferryman.broker.embedded import EmbeddedBroker
from ferryman.broker.partitioner import partition_for
from ferryman.errors import ConfigError, StoreError
from ferryman.stores import OUTBOX_TABLE, Database, Outbox, OutboxRecord
from ferryman.stores.outbox import decode_headers, encode_headers

from .outbox_helpers import new_topic


@pytest.fixture
def broker(tmp_path: Path) -> EmbeddedBroker:
    return EmbeddedBroker(tmp_path / "broker.db", cleaner_interval=None)


def rows(database: Database) -> list[tuple[object, ...]]:
    t = Outbox(database, {}).table
    with database.begin() as conn:
        query = select(t.c.topic, t.c.partition, t.c.key, t.c.value, t.c.headers, t.c.timestamp_ms)
        return [tuple(r) for r in conn.execute(query.order_by(t.c.id))]


def test_the_outbox_table_is_created_with_the_services_tables(database: Database) -> None:
    Outbox(database, {"t": 1})
    assert OUTBOX_TABLE in database.create_missing()
    with database.engine.connect() as conn:
        assert OUTBOX_TABLE in inspect(conn).get_table_names()


def test_rows_hold_the_record_exactly_with_the_partition_of_its_key(database: Database) -> None:
    outbox = Outbox(database, {"orders": 6})
    database.create_missing()
    headers = (("ferryman.message-id", b"m-1"), ("bin", bytes(range(256))), ("empty", b""))
    with database.sessions.begin() as session:
        outbox.write(
            session,
            OutboxRecord("orders", b"order-7", b"\x00value", headers, timestamp_ms=1234),
            OutboxRecord("orders", b"order-7", None),  # a tombstone, not an empty value
        )
    (first, second) = rows(database)
    assert first == (
        "orders",
        partition_for(b"order-7", 6),
        b"order-7",
        b"\x00value",
        encode_headers(headers),
        1234,
    )
    assert decode_headers(first[4]) == headers
    assert second[3] is None
    assert second[1] == first[1]


def test_a_rolled_back_transaction_leaves_no_row(database: Database) -> None:
    outbox = Outbox(database, {"orders": 2})
    database.create_missing()

    def failing_work() -> None:
        with database.begin() as conn:
            outbox.write(conn, OutboxRecord("orders", b"k", b"v"))
            raise RuntimeError("the caller's work failed")

    with pytest.raises(RuntimeError):
        failing_work()
    session = database.sessions()
    outbox.write(session, OutboxRecord("orders", b"k", b"v"))
    session.rollback()
    session.close()
    assert rows(database) == []


def test_a_partition_outside_the_topic_is_refused(database: Database) -> None:
    outbox = Outbox(database, {"orders": 2})
    database.create_missing()
    with pytest.raises(ConfigError, match=r"partition 2.*has 2"), database.begin() as conn:
        outbox.write(conn, OutboxRecord("orders", b"k", b"v", partition=2))


def test_an_unknown_topic_says_to_declare_it(database: Database) -> None:
    outbox = Outbox(database, {"orders": 2})
    database.create_missing()
    with pytest.raises(StoreError, match=r"'payments'.*declare"), database.begin() as conn:
        outbox.write(conn, OutboxRecord("payments", b"k", b"v"))


def test_partition_counts_come_from_the_broker_once_per_topic(
    database: Database, broker: EmbeddedBroker
) -> None:
    topic = new_topic(broker, 3)
    admin = broker.admin()
    asked: list[str] = []

    def count(name: str) -> int:
        asked.append(name)
        return admin.describe_topic(name).partitions

    outbox = Outbox(database, count)
    database.create_missing()
    with database.begin() as conn:
        outbox.write(conn, *(OutboxRecord(topic, f"k{i}".encode(), b"v") for i in range(5)))
        outbox.write(conn, OutboxRecord(topic, None, b"unkeyed"))
    assert asked == [topic]
    assert {r[1] for r in rows(database)} <= {0, 1, 2}
    broker.close()


def test_headers_blob_round_trips() -> None:
    for headers in [(), (("a", b""),), (("é", b"\xff" * 70000), ("a", b"1"), ("a", b"2"))]:
        assert decode_headers(encode_headers(headers)) == headers
