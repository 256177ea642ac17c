"""Python models <-> Avro schemas: every supported type, round-tripped through the codec."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
import pytest

from ferryman.errors import SchemaError
from ferryman.schema import AvroCodec, EmbeddedRegistry, SerdeContext, avro_schema, load_schema

from .schema_models import (
    Address,
    Everything,
    Frozen,
    Money,
    MoneyZeros,
    Node,
    NonNullDefault,
    PAddress,
    PEverything,
    Status,
    Times,
    WithPostInit,
    everything,
)

UTC = dt.UTC


def field_types(schema: Any) -> dict[str, Any]:
    return {f["name"]: f["type"] for f in schema["fields"]}


def record_schema(model: Any) -> dict[str, Any]:
    """``avro_schema(model)`` for a model that maps to a record, so always a JSON object."""
    schema = avro_schema(model)
    assert isinstance(schema, dict), schema
    return schema


def record_fields(model: Any) -> dict[str, dict[str, Any]]:
    """The fields of ``model``'s record schema, by name."""
    return {f["name"]: f for f in record_schema(model)["fields"]}


def round_trip(value: Any, registry: EmbeddedRegistry, model: Any = None) -> Any:
    codec = AvroCodec(model or type(value), registry)
    ctx = SerdeContext(f"things-{uuid.uuid4().hex[:8]}")
    return codec.decode(codec.encode(value, ctx), ctx)


def test_every_type_maps_to_its_avro_type() -> None:
    types = field_types(avro_schema(Everything))
    assert types["id"] == "long"
    assert types["name"] == "string"
    assert types["price"] == "double"
    assert types["active"] == "boolean"
    assert types["blob"] == "bytes"
    assert types["at"] == {"type": "long", "logicalType": "timestamp-micros"}
    assert types["at_ms"] == {"type": "long", "logicalType": "timestamp-millis"}
    assert types["day"] == {"type": "int", "logicalType": "date"}
    assert types["amount"] == {
        "type": "bytes",
        "logicalType": "decimal",
        "precision": 38,
        "scale": 9,
    }
    assert types["exact"] == {
        "type": "bytes",
        "logicalType": "decimal",
        "precision": 10,
        "scale": 2,
    }
    assert types["ref"] == {"type": "string", "logicalType": "uuid"}
    assert types["status"] == {
        "type": "enum",
        "name": "Status",
        "namespace": Status.__module__,
        "symbols": ["NEW", "PAID", "SHIPPED"],
    }
    assert types["home"]["type"] == "record"
    assert types["home"]["name"] == "Address"
    # The second use of a named type is a reference by full name, as Avro requires.
    assert types["work"] == ["null", f"{Address.__module__}.Address"]
    assert types["history"] == {"type": "array", "items": f"{Address.__module__}.Address"}
    assert types["labels"] == {"type": "map", "values": "long"}
    assert types["places"] == {"type": "map", "values": f"{Address.__module__}.Address"}
    fastavro.parse_schema(avro_schema(Everything))  # a valid Avro schema


def test_optional_fields_are_null_unions_defaulting_to_null_and_defaults_are_kept() -> None:
    fields = record_fields(Everything)
    assert fields["note"]["type"] == ["null", "string"]
    assert fields["note"]["default"] is None
    assert fields["work"]["default"] is None
    assert fields["retries"]["default"] == 3
    assert fields["state"]["default"] == "NEW"
    assert fields["extra"]["default"] == []
    assert "default" not in fields["id"]


def test_record_name_and_namespace_come_from_the_class() -> None:
    schema = record_schema(Address)
    assert (schema["name"], schema["namespace"]) == ("Address", Address.__module__)


def test_dataclass_round_trip_covers_every_type(embedded: EmbeddedRegistry) -> None:
    value = everything()
    back = round_trip(value, embedded)
    assert type(back) is Everything
    assert back == value
    assert back.at.tzinfo is not None
    assert type(back.history[0]) is Address
    assert back.status is Status.PAID


def test_defaults_and_nones_round_trip(embedded: EmbeddedRegistry) -> None:
    value = dataclasses.replace(everything(), note=None, work=Address("Bodø"), tags=[], labels={})
    assert round_trip(value, embedded) == value


def test_pydantic_model_round_trip(embedded: EmbeddedRegistry) -> None:
    value = PEverything(
        id=7,
        name="p",
        at=dt.datetime(2023, 1, 1, 12, 0, tzinfo=UTC),
        day=dt.date(2023, 1, 1),
        amount=Decimal("1234.567"),
        ref=uuid.uuid4(),
        status=Status.SHIPPED,
        home=PAddress(city="Oslo"),
        work=PAddress(city="Rome", zip="00100"),
        places={"a": PAddress(city="Paris")},
    )
    back = round_trip(value, embedded)
    assert type(back) is PEverything
    assert back == value
    assert type(back.work) is PAddress
    assert back.model_dump() == value.model_dump()
    amount = field_types(avro_schema(PEverything))["amount"]
    assert (amount["precision"], amount["scale"]) == (12, 3)


def test_recursive_record_round_trips(embedded: EmbeddedRegistry) -> None:
    tree = Node("root", [Node("a", [Node("a1")]), Node("b")])
    assert round_trip(tree, embedded) == tree


def test_frozen_dataclass_and_post_init_are_respected(embedded: EmbeddedRegistry) -> None:
    assert round_trip(Frozen(1, Status.NEW), embedded) == Frozen(1, Status.NEW)
    back = round_trip(WithPostInit(4), embedded)
    assert (back.id, back.doubled) == (4, 8)


def test_naive_datetimes_are_taken_as_utc(embedded: EmbeddedRegistry) -> None:
    value = dataclasses.replace(everything(), at=dt.datetime(2024, 1, 1, 10, 30))
    back = round_trip(value, embedded)
    assert back.at == dt.datetime(2024, 1, 1, 10, 30, tzinfo=UTC)


def test_plain_types_are_models_too(embedded: EmbeddedRegistry) -> None:
    assert avro_schema(int) == "long"
    assert avro_schema(uuid.UUID) == {"type": "string", "logicalType": "uuid"}
    for model, value in [(int, 42), (str, "k"), (uuid.UUID, uuid.uuid4()), (Status, Status.NEW)]:
        assert round_trip(value, embedded, model) == value


@pytest.mark.parametrize("form", ["path", "text", "dict"])
def test_hand_written_schema_decodes_to_dicts(
    form: str, tmp_path: Path, embedded: EmbeddedRegistry
) -> None:
    schema = {
        "type": "record",
        "name": "Reading",
        "namespace": "sensors",
        "fields": [
            {"name": "sensor", "type": "string"},
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "value", "type": ["null", "double"], "default": None},
        ],
    }
    source: Any = schema
    if form == "text":
        source = json.dumps(schema)
    elif form == "path":
        source = tmp_path / "reading.avsc"
        source.write_text(json.dumps(schema))
        source = str(source)
    assert load_schema(source) == schema
    value = {"sensor": "s1", "at": dt.datetime(2024, 1, 1, tzinfo=UTC), "value": 1.5}
    assert round_trip(value, embedded, source) == value


@pytest.mark.parametrize(
    ("model", "words"),
    [
        (set[int], "has no Avro mapping"),
        (dict[int, str], "dict keys must be str"),
        (int | str | Address, "not supported"),
    ],
)
def test_unsupported_types_are_refused_with_a_reason(model: Any, words: str) -> None:
    with pytest.raises(SchemaError, match=words):
        avro_schema(model)


def test_a_missing_avsc_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="cannot read schema file"):
        load_schema(str(tmp_path / "nope.avsc"))


def test_an_optional_field_with_a_value_default_puts_that_type_first(
    embedded: EmbeddedRegistry,
) -> None:
    fields = record_fields(NonNullDefault)
    assert fields["region"] == {"name": "region", "type": ["string", "null"], "default": "eu"}
    for value in (NonNullDefault(1), NonNullDefault(2, None)):
        assert round_trip(value, embedded) == value


@pytest.mark.usefixtures("far_from_utc")
def test_naive_datetimes_are_utc_wherever_they_are_and_whatever_the_local_zone(
    embedded: EmbeddedRegistry,
) -> None:
    naive = dt.datetime(2024, 1, 1, 10, 30)
    aware = naive.replace(tzinfo=UTC)
    value = Times(at=naive, at_ms=naive, maybe=naive, many=[naive])
    back = round_trip(value, embedded)
    assert (back.at, back.at_ms, back.maybe, back.many) == (aware, aware, aware, [aware])


def test_timestamp_defaults_are_written_in_the_fields_own_unit() -> None:
    fields = record_fields(Times)
    assert fields["since"]["default"] == 1_704_067_200_000  # milliseconds
    assert fields["naive_since"]["default"] == 1_704_067_200_000_000  # microseconds, as UTC


@pytest.mark.parametrize("model", [Money, MoneyZeros])
def test_decimal_defaults_are_written_as_avro_bytes(model: Any) -> None:
    fields = record_fields(model)
    assert fields["rate"]["default"] == "\x19"  # unscaled 25, big-endian, as a JSON string
    fastavro.parse_schema(avro_schema(model))


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("1.5", "too large"),  # 150 unscaled: more digits than decimal(2, 2) holds
        ("0.999", "more digits after the point"),
        ("NaN", "not a finite number"),
        ("-Infinity", "not a finite number"),
    ],
)
def test_decimals_that_do_not_fit_are_refused_not_rounded(
    value: str, words: str, embedded: EmbeddedRegistry
) -> None:
    codec = AvroCodec(Money, embedded)
    with pytest.raises(SchemaError, match=rf"Money\.rate.*{words}"):
        codec.encode(Money(Decimal("1.00"), Decimal(value)), SerdeContext("money"))


def test_decimals_with_trailing_zeros_beyond_the_scale_fit(embedded: EmbeddedRegistry) -> None:
    back = round_trip(Money(Decimal("12.340000"), Decimal("0.50")), embedded)
    assert back == Money(Decimal("12.34"), Decimal("0.5"))
    assert round_trip(Money(Decimal("-99.99"), Decimal("0")), embedded).cents == Decimal("-99.99")
    nested = MoneyZeros([Decimal("1.000"), Decimal("2.5")])
    assert round_trip(nested, embedded).cents == [Decimal("1.00"), Decimal("2.50")]
