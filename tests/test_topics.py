"""Topic declarations: each kind's rules, checked where the topic is declared."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pydantic
import pytest

from ferryman.errors import TopicDeclarationError
from ferryman.records import TopicSpec
from ferryman.topics import EntityTopic, EventTopic, RequestTopic


@dataclass
class Customer:
    id: int
    name: str
    email: str | None = None


@dataclass
class OrderPlaced:
    order_id: str
    customer_id: int
    total: float


@dataclass
class Quote:
    price: float


class Product(pydantic.BaseModel):
    sku: uuid.UUID
    title: str


def test_entity_topic_is_compacted_and_keyed_by_its_field() -> None:
    topic = EntityTopic("customers", Customer, key="id", partitions=3)
    assert topic.spec == TopicSpec(
        "customers",
        3,
        {
            "cleanup.policy": "compact",
            "min.compaction.lag.ms": "0",
            "delete.retention.ms": "86400000",
            "min.cleanable.dirty.ratio": "0.5",
        },
    )
    assert topic.key_type is int
    assert topic.key_of(Customer(7, "Ada")) == 7
    assert topic.compatibility == "FULL_TRANSITIVE"


def test_entity_topic_accepts_pydantic_models_and_uuid_keys() -> None:
    topic = EntityTopic("products", Product, key="sku")
    assert topic.key_type is uuid.UUID


def test_entity_topic_key_must_be_a_field() -> None:
    with pytest.raises(
        TopicDeclarationError, match=r"'customer_id' is not a field of Customer.*id, name, email"
    ):
        EntityTopic("customers", Customer, key="customer_id")


def test_entity_topic_needs_a_key() -> None:
    with pytest.raises(TopicDeclarationError, match="needs a key field"):
        EntityTopic("customers", Customer, key="")


def test_entity_key_cannot_be_optional() -> None:
    with pytest.raises(TopicDeclarationError, match="cannot be optional"):
        EntityTopic("customers", Customer, key="email")


def test_entity_key_must_hash_the_same_everywhere() -> None:
    with pytest.raises(TopicDeclarationError, match="keys must be int, str"):
        EntityTopic("orders", OrderPlaced, key="total")


def test_entity_topic_refuses_delete_policy() -> None:
    with pytest.raises(TopicDeclarationError, match="declare an EventTopic"):
        EntityTopic("customers", Customer, config={"cleanup.policy": "delete"})


def test_event_topic_keeps_facts_by_retention() -> None:
    topic = EventTopic(
        "orders.placed", OrderPlaced, partition_key="order_id", config={"retention.ms": 1000}
    )
    assert topic.spec.config == {"cleanup.policy": "delete", "retention.ms": "1000"}
    assert topic.key_of(OrderPlaced("o-1", 7, 1.0)) == "o-1"
    unkeyed = EventTopic("orders.placed", OrderPlaced)
    assert unkeyed.key_type is None
    assert unkeyed.key_of(OrderPlaced("o-1", 7, 1.0)) is None


def test_event_partition_key_must_be_a_field() -> None:
    with pytest.raises(
        TopicDeclarationError, match="partition_key field 'id' is not a field of OrderPlaced"
    ):
        EventTopic("orders.placed", OrderPlaced, partition_key="id")


def test_event_topic_refuses_compaction() -> None:
    with pytest.raises(TopicDeclarationError, match="declare an EntityTopic"):
        EventTopic("orders.placed", OrderPlaced, config={"cleanup.policy": "compact"})


def test_request_topic_has_a_reply_topic_and_short_retention() -> None:
    topic = RequestTopic("pricing.quote", OrderPlaced, reply=Quote, reply_partitions=2)
    names = [(s.name, s.partitions) for s in topic.specs()]
    assert names == [("pricing.quote", 6), ("pricing.quote.reply", 2)]
    assert topic.spec.config["retention.ms"] == "3600000"
    assert topic.compatibility == "BACKWARD_TRANSITIVE"


def test_request_topic_may_be_keyed() -> None:
    topic = RequestTopic("pricing.quote", OrderPlaced, reply=Quote, partition_key="order_id")
    assert topic.key_of(OrderPlaced("o-9", 1, 2.0)) == "o-9"
    with pytest.raises(TopicDeclarationError, match="partition_key field 'sku'"):
        RequestTopic("pricing.quote", OrderPlaced, reply=Quote, partition_key="sku")


def test_request_reply_must_be_a_model() -> None:
    with pytest.raises(TopicDeclarationError, match="reply model"):
        RequestTopic("pricing.quote", OrderPlaced, reply=float)


@pytest.mark.parametrize("name", ["", "has space", "a/b", "x" * 250, "..", "orders\n"])
def test_illegal_names(name: str) -> None:
    with pytest.raises(TopicDeclarationError, match="not a legal topic name"):
        EventTopic(name, OrderPlaced)


@pytest.mark.parametrize("name", ["orders.dlq", "pricing.quote.reply"])
def test_derived_suffixes_are_reserved(name: str) -> None:
    with pytest.raises(TopicDeclarationError, match="reserves"):
        EventTopic(name, OrderPlaced)


def test_partitions_must_be_positive() -> None:
    with pytest.raises(TopicDeclarationError, match="partitions=0"):
        EventTopic("orders.placed", OrderPlaced, partitions=0)


def test_model_must_be_a_dataclass_or_pydantic() -> None:
    with pytest.raises(TopicDeclarationError, match="@dataclass"):
        EventTopic("orders.placed", dict)
