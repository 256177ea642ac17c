"""Interop with a client no one here wrote: confluent-kafka's Avro serde and registry client,
pointed at `ferryman registry serve` running as a separate process."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from ferryman.schema import AvroCodec, EmbeddedRegistry, HttpRegistry, SerdeContext, avro_schema

from .schema_models import Address, CustomerV1, CustomerV3, PAddress, PEverything, Status

UTC = dt.UTC


@pytest.fixture
def client(server_url: str) -> Iterator[SchemaRegistryClient]:
    c = SchemaRegistryClient({"url": server_url})
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def http_registry(server_url: str) -> Iterator[HttpRegistry]:
    r = HttpRegistry(server_url)
    try:
        yield r
    finally:
        r.close()


def sample() -> PEverything:
    return PEverything(
        id=11,
        name="interop",
        at=dt.datetime(2024, 3, 4, 5, 6, 7, 890123, tzinfo=UTC),
        day=dt.date(2024, 3, 4),
        amount=Decimal("98765.432"),
        ref=uuid.UUID("00000000-0000-4000-8000-000000000001"),
        status=Status.PAID,
        home=PAddress(city="Oslo", zip="0150"),
        places={"cabin": PAddress(city="Geilo")},
        tags=["x"],
    )


def as_avro_dict(value: PEverything) -> dict[str, Any]:
    """What confluent-kafka's deserializer (fastavro underneath) gives for ``value``."""
    d = value.model_dump()
    d["status"] = value.status.name
    return d


def test_confluent_deserializer_reads_what_ferryman_writes_over_http(
    client: SchemaRegistryClient, http_registry: HttpRegistry, topic: str
) -> None:
    codec = AvroCodec(PEverything, http_registry)
    data = codec.encode(sample(), SerdeContext(topic))
    got = AvroDeserializer(client)(data, SerializationContext(topic, MessageField.VALUE))
    assert got == as_avro_dict(sample())


def test_confluent_deserializer_reads_what_ferryman_writes_to_the_served_file(
    client: SchemaRegistryClient, server: tuple[str, Path], topic: str
) -> None:
    # This process writes the registry file; the server process serves it to confluent-kafka.
    with EmbeddedRegistry(server[1]) as embedded:
        data = AvroCodec(Address, embedded).encode(Address("Bergen", "5003"), SerdeContext(topic))
    deserialize = AvroDeserializer(client, from_dict=lambda d, ctx: Address(**d))
    got = deserialize(data, SerializationContext(topic, MessageField.VALUE))
    assert got == Address("Bergen", "5003")


def test_ferryman_reads_what_confluent_serializer_writes(
    client: SchemaRegistryClient, http_registry: HttpRegistry, topic: str
) -> None:
    serialize = AvroSerializer(
        client,
        json.dumps(avro_schema(PEverything)),
        to_dict=lambda obj, ctx: as_avro_dict(obj),
    )
    data = serialize(sample(), SerializationContext(topic, MessageField.VALUE))
    assert data is not None
    assert data[0] == 0
    codec = AvroCodec(PEverything, http_registry)
    assert codec.decode(data, SerdeContext(topic, partition=0, offset=0)) == sample()
    # ferryman registering the same model finds the schema confluent-kafka registered.
    assert codec.encode(sample(), SerdeContext(topic))[:5] == data[:5]
    assert http_registry.versions(f"{topic}-value") == [1]


def test_confluent_client_is_refused_an_incompatible_change(
    client: SchemaRegistryClient, topic: str
) -> None:
    subject = f"{topic}-value"
    client.register_schema(subject, Schema(json.dumps(avro_schema(CustomerV1)), "AVRO"))
    with pytest.raises(SchemaRegistryError) as caught:
        client.register_schema(subject, Schema(json.dumps(avro_schema(CustomerV3)), "AVRO"))
    assert caught.value.http_status_code == 409
    assert "tier" in caught.value.error_message
    assert client.get_versions(subject) == [1]
    assert client.get_latest_version(subject).version == 1
