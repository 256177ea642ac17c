"""The Avro codec: Confluent wire format, refusal before send, and DecodeError coordinates."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import uuid
from decimal import Decimal
from typing import Any

import fastavro
import pytest

from ferryman.errors import ConfigError, DecodeError, IncompatibleSchema, SchemaError
from ferryman.schema import (
    AvroCodec,
    EmbeddedRegistry,
    Registry,
    SchemaLookupNeeded,
    SerdeContext,
    avro_schema,
)
from ferryman.schema.parsing import AvroSchema

from .schema_models import (
    Address,
    Aliased,
    BadDefault,
    CustomerCopy,
    CustomerV1,
    CustomerV2,
    CustomerV3,
    CustomerV4,
    Home,
    HomeOnARoad,
    HomeWithSize,
    Order,
    OrderV2,
    Road,
    SizeV1,
    SizeV2,
    Status,
    StatusPlus,
    Street,
    Validated,
    everything,
)


def test_wire_format_is_magic_byte_schema_id_and_fastavro_body(
    embedded: EmbeddedRegistry, topic: str
) -> None:
    codec = AvroCodec(Address, embedded)
    data = codec.encode(Address("Oslo", "0150"), SerdeContext(topic))
    schema_id = embedded.lookup(f"{topic}-value", avro_schema(Address)).schema_id
    assert data[0] == 0
    assert int.from_bytes(data[1:5], "big") == schema_id
    body = io.BytesIO()
    fastavro.schemaless_writer(
        body, fastavro.parse_schema(avro_schema(Address)), {"city": "Oslo", "zip": "0150"}
    )
    assert data[5:] == body.getvalue()


@pytest.mark.parametrize(
    "key", ["", "o-12345", "é" * 31, "é" * 32, "x" * 63, "x" * 64, "日本" * 50]
)
def test_a_string_key_is_written_as_fastavro_writes_it(
    embedded: EmbeddedRegistry, topic: str, key: str
) -> None:
    # Short string keys skip fastavro (a tenth of a send's CPU): the bytes must be the same.
    codec = AvroCodec(str, embedded)
    ctx = SerdeContext(topic, "key")
    data = codec.encode(key, ctx)
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema("string"), key)
    assert data[5:] == body.getvalue()
    assert codec.decode(data, ctx) == key


def test_keys_and_values_register_under_their_own_subjects(
    embedded: EmbeddedRegistry, topic: str
) -> None:
    keys, values = AvroCodec(int, embedded), AvroCodec(Address, embedded)
    key = keys.encode(42, SerdeContext(topic, "key"))
    values.encode(Address("Oslo"), SerdeContext(topic, "value"))
    assert embedded.subjects() == sorted([f"{topic}-key", f"{topic}-value"])
    assert embedded.latest(f"{topic}-key").schema == "long"
    assert keys.decode(key, SerdeContext(topic, "key")) == 42


def test_schema_is_registered_once_per_subject_then_cached(
    embedded: EmbeddedRegistry, topic: str
) -> None:
    codec = AvroCodec(Address, embedded)
    ctx = SerdeContext(topic)
    first = codec.encode(Address("a"), ctx)
    embedded.delete_subject(ctx.subject)
    # No registration on the hot path: the deleted subject stays deleted.
    second = codec.encode(Address("a"), ctx)
    assert first == second
    assert embedded.subjects() == []


def test_compatibility_given_to_the_codec_is_set_on_the_subject(
    embedded: EmbeddedRegistry, topic: str
) -> None:
    AvroCodec(Address, embedded, compatibility="full_transitive").encode(
        Address("a"), SerdeContext(topic)
    )
    assert embedded.get_compatibility(f"{topic}-value") == "FULL_TRANSITIVE"
    assert embedded.get_compatibility() == "BACKWARD"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"id": "7"}, "id"),
        ({"id": 7.5}, "id"),
        ({"active": "yes"}, "active"),
        ({"name": None}, "name"),
        ({"exact": Decimal("1.234")}, "exact"),
        ({"amount": 1.5}, "amount"),
        ({"ref": "not-a-uuid"}, "ref"),
        ({"home": Address(city=3)}, "city"),  # type: ignore[arg-type]
        ({"labels": {"x": "one"}}, "labels"),
        ({"status": "PAID"}, "status"),
        ({"history": [Address("a"), "b"]}, "history"),
    ],
)
def test_a_value_that_does_not_fit_is_refused_naming_the_field(
    change: dict[str, Any], field: str, embedded: EmbeddedRegistry, topic: str
) -> None:
    codec = AvroCodec(type(everything()), embedded)
    bad = dataclasses.replace(everything(), **change)
    with pytest.raises(SchemaError, match=field) as caught:
        codec.encode(bad, SerdeContext(topic))
    assert topic in str(caught.value)
    assert not isinstance(caught.value, DecodeError)


def test_an_instance_of_another_model_is_refused(embedded: EmbeddedRegistry, topic: str) -> None:
    codec = AvroCodec(Address, embedded)
    with pytest.raises(SchemaError, match="expected a Address, got CustomerV1"):
        codec.encode(CustomerV1(1, "x"), SerdeContext(topic))


def test_dicts_are_validated_in_full(embedded: EmbeddedRegistry, topic: str) -> None:
    codec = AvroCodec(Address, embedded)
    ctx = SerdeContext(topic)
    assert codec.decode(codec.encode({"city": "Oslo", "zip": None}, ctx), ctx) == Address("Oslo")
    with pytest.raises(SchemaError, match="city"):
        codec.encode({"city": 5}, ctx)


def coordinates(error: DecodeError) -> tuple[str | None, int | None, int | None]:
    return error.topic, error.partition, error.offset


@pytest.mark.parametrize(
    ("corrupt", "words"),
    [
        (lambda d: b"\x01" + d[1:], "bad magic byte 1"),
        (lambda d: d[:3], "fewer than the 5-byte"),
        (lambda d: b"", "fewer than the 5-byte"),
        (lambda d: d[:-3], "cannot be read"),
        (lambda d: d + b"\x00\x01", "bytes left after the body"),
        (lambda d: b"\x00\x00\x00\x30\x39" + d[5:], "schema id 12345 is unknown"),
    ],
)
def test_undecodable_messages_raise_decode_error_with_coordinates(
    corrupt: Any, words: str, embedded: EmbeddedRegistry, topic: str
) -> None:
    codec = AvroCodec(Address, embedded)
    good = codec.encode(Address("Oslo", "0150"), SerdeContext(topic))
    where = SerdeContext(topic, partition=3, offset=1234)
    with pytest.raises(DecodeError, match=words) as caught:
        codec.decode(corrupt(good), where)
    assert coordinates(caught.value) == (topic, 3, 1234)
    assert "partition 3, offset 1234" in str(caught.value)


def test_old_messages_are_read_into_the_new_model(embedded: EmbeddedRegistry, topic: str) -> None:
    ctx = SerdeContext(topic)
    old = AvroCodec(CustomerV1, embedded).encode(CustomerV1(1, "Ann"), ctx)
    new_codec = AvroCodec(CustomerV2, embedded)
    new = new_codec.encode(CustomerV2(2, "Bo", "bo@example.com"), ctx)
    assert embedded.versions(ctx.subject) == [1, 2]
    assert new_codec.decode(old, ctx) == CustomerV2(1, "Ann", None)
    assert new_codec.decode(new, ctx) == CustomerV2(2, "Bo", "bo@example.com")
    # And the old model reads new messages (the added field is skipped).
    assert AvroCodec(CustomerV1, embedded).decode(new, ctx) == CustomerV1(2, "Bo")


def test_an_incompatible_model_change_is_refused_before_sending(
    embedded: EmbeddedRegistry, topic: str
) -> None:
    ctx = SerdeContext(topic)
    AvroCodec(CustomerV1, embedded).encode(CustomerV1(1, "Ann"), ctx)
    with pytest.raises(IncompatibleSchema, match=rf"{topic}-value.*tier.*BACKWARD"):
        AvroCodec(CustomerV3, embedded).encode(CustomerV3(1, "Ann", 2), ctx)
    assert embedded.versions(ctx.subject) == [1]


def test_a_message_the_model_cannot_hold_is_a_decode_error(
    embedded: EmbeddedRegistry, topic: str
) -> None:
    ctx = SerdeContext(topic, partition=0, offset=9)
    embedded.set_compatibility("NONE", ctx.subject)
    data = AvroCodec(CustomerV3, embedded).encode(CustomerV3(1, "Ann", 2), ctx)
    reader = AvroCodec(Status, embedded)  # an enum model reading a record
    with pytest.raises(DecodeError) as caught:
        reader.decode(data, ctx)
    assert coordinates(caught.value) == (topic, 0, 9)


def test_same_model_same_id_across_codecs(embedded: EmbeddedRegistry) -> None:
    a = AvroCodec(Address, embedded).encode(Address("x"), SerdeContext(f"a{uuid.uuid4().hex}"))
    b = AvroCodec(Address, embedded).encode(Address("x"), SerdeContext(f"b{uuid.uuid4().hex}"))
    assert a[:5] == b[:5]


def test_pydantic_validators_run_on_decode(embedded: EmbeddedRegistry, topic: str) -> None:
    ctx = SerdeContext(topic)
    raw = AvroCodec(avro_schema(Validated), embedded)  # dicts, no model: no validation
    data = raw.encode({"email": "ANN@EXAMPLE.COM", "level": 1}, ctx)
    assert AvroCodec(Validated, embedded).decode(data, ctx) == Validated(
        email="ann@example.com", level=1
    )
    bad = raw.encode({"email": "a@b", "level": -1}, ctx)
    with pytest.raises(DecodeError, match="Validated"):
        AvroCodec(Validated, embedded).decode(bad, ctx)


def test_plain_type_keys_refuse_values_of_another_type(
    embedded: EmbeddedRegistry, topic: str
) -> None:
    codec = AvroCodec(int, embedded)
    ctx = SerdeContext(topic, "key")
    assert codec.decode(codec.encode(7, ctx), ctx) == 7
    with pytest.raises(SchemaError, match="expected long"):
        codec.encode("7", ctx)
    with pytest.raises(SchemaError):
        codec.encode(7.5, ctx)


def test_a_consumer_keeps_its_own_copy_of_the_model(embedded: EmbeddedRegistry, topic: str) -> None:
    ctx = SerdeContext(topic)
    data = AvroCodec(CustomerV2, embedded).encode(CustomerV2(3, "Cy", "cy@example.com"), ctx)
    assert AvroCodec(CustomerCopy, embedded).decode(data, ctx) == CustomerCopy("Cy", 3)


def test_defaults_filled_in_for_old_messages_are_not_shared(
    embedded: EmbeddedRegistry, topic: str
) -> None:
    ctx = SerdeContext(topic)
    old = AvroCodec(CustomerV1, embedded).encode(CustomerV1(1, "Ann"), ctx)
    codec = AvroCodec(CustomerV4, embedded)
    first, second = codec.decode(old, ctx), codec.decode(old, ctx)
    first.tags.append("vip")
    first.attrs["k"] = "v"
    assert (second.tags, second.attrs) == ([], {})
    assert codec.decode(old, ctx) == CustomerV4(1, "Ann")


def test_plain_uuid_keys_refuse_strings(embedded: EmbeddedRegistry, topic: str) -> None:
    codec = AvroCodec(uuid.UUID, embedded)
    ctx = SerdeContext(topic, "key")
    key = uuid.uuid4()
    assert codec.decode(codec.encode(key, ctx), ctx) == key
    with pytest.raises(SchemaError, match="UUID"):
        codec.encode("not-a-uuid", ctx)


@pytest.mark.usefixtures("far_from_utc")
def test_a_union_of_plain_types_still_normalizes_its_timestamps(
    embedded: EmbeddedRegistry, topic: str
) -> None:
    codec = AvroCodec(int | dt.datetime, embedded)
    ctx = SerdeContext(topic)
    at = dt.datetime(2024, 1, 1, 10, 30)
    assert codec.decode(codec.encode(at, ctx), ctx) == at.replace(tzinfo=dt.UTC)
    assert codec.decode(codec.encode(5, ctx), ctx) == 5


def _record(*fields: dict[str, Any]) -> dict[str, Any]:
    return {"type": "record", "name": "Thing", "namespace": "levels", "fields": list(fields)}


ID = {"name": "id", "type": "long"}
A = _record(ID)
B = _record(ID, {"name": "x", "type": "string", "default": "a"})  # A plus x with a default
C = _record(ID, {"name": "x", "type": "string"})  # A plus x without one
D = _record({"name": "id", "type": "string"})


@pytest.mark.parametrize(
    ("level", "history", "new", "refused"),
    [
        ("BACKWARD", [A], C, "x"),
        ("BACKWARD", [A, B], C, None),
        ("BACKWARD_TRANSITIVE", [A, B], C, "x"),
        ("FORWARD", [C], A, "x"),
        ("FORWARD", [C, B], A, None),
        ("FORWARD_TRANSITIVE", [C, B], A, "x"),
        ("FULL", [A], C, "x"),
        ("FULL", [A, B], C, None),
        ("FULL_TRANSITIVE", [A, B], C, "x"),
        ("NONE", [A], D, None),
    ],
)
def test_every_level_given_to_the_codec_is_enforced_at_registration(
    level: str,
    history: list[dict[str, Any]],
    new: dict[str, Any],
    refused: str | None,
    registry: Registry,
    topic: str,
) -> None:
    ctx = SerdeContext(topic)
    for schema in history:
        AvroCodec(schema, registry, compatibility=level).encode({"id": 1, "x": "v"}, ctx)
    codec = AvroCodec(new, registry, compatibility=level)
    value = {"id": "1"} if new is D else {"id": 1, "x": "v"}
    if refused is None:
        codec.encode(value, ctx)
        assert registry.versions(ctx.subject) == list(range(1, len(history) + 2))
        return
    with pytest.raises(IncompatibleSchema) as caught:
        codec.encode(value, ctx)
    assert f"Thing.{refused}" in str(caught.value)
    assert level in str(caught.value)
    assert registry.versions(ctx.subject) == list(range(1, len(history) + 1))
    assert registry.get_compatibility(ctx.subject) == level


def test_an_unknown_level_is_refused_when_the_codec_is_made(embedded: EmbeddedRegistry) -> None:
    with pytest.raises(ConfigError, match=r"SIDEWAYS.*FULL_TRANSITIVE"):
        AvroCodec(Address, embedded, compatibility="SIDEWAYS")


def test_an_enum_default_lets_a_symbol_be_added_under_full_transitive(
    embedded: EmbeddedRegistry, topic: str
) -> None:
    ctx = SerdeContext(topic)
    old = AvroCodec(SizeV1, embedded, compatibility="FULL_TRANSITIVE")
    old.encode(SizeV1.S, ctx)
    new = AvroCodec(SizeV2, embedded, compatibility="FULL_TRANSITIVE")
    data = new.encode(SizeV2.L, ctx)
    assert old.decode(data, ctx) is SizeV1.UNKNOWN  # the reader's default stands in for L


def test_without_an_enum_default_adding_a_symbol_is_refused_naming_the_enum(
    embedded: EmbeddedRegistry, topic: str
) -> None:
    ctx = SerdeContext(topic)
    AvroCodec(Status, embedded, compatibility="FULL_TRANSITIVE").encode(Status.NEW, ctx)
    with pytest.raises(IncompatibleSchema, match=r"'REFUNDED'.*no default symbol.*FULL_TRANSITIVE"):
        AvroCodec(StatusPlus, embedded, compatibility="FULL_TRANSITIVE").encode(StatusPlus.NEW, ctx)


def test_an_enum_default_must_be_one_of_its_symbols() -> None:
    with pytest.raises(SchemaError, match=r"__avro_default__ 'HUGE'.*UNKNOWN, S"):
        avro_schema(BadDefault)


def test_nested_defaults_filled_in_for_old_messages_are_not_shared(
    embedded: EmbeddedRegistry, topic: str
) -> None:
    ctx = SerdeContext(topic)
    old = AvroCodec(Order, embedded).encode(Order(1, CustomerV1(1, "Ann")), ctx)
    codec = AvroCodec(OrderV2, embedded)
    first = codec.decode(old, ctx)
    first.customer.tags.append("vip")
    first.customer.attrs["k"] = "v"
    assert codec.decode(old, ctx) == OrderV2(1, CustomerV4(1, "Ann"))


def test_pydantic_aliases_decode_through_validation(embedded: EmbeddedRegistry, topic: str) -> None:
    ctx = SerdeContext(topic)
    codec = AvroCodec(Aliased, embedded)
    # __init__ takes the aliases at run time, but mypy knows it only by `alias`, not by
    # `validation_alias`: model_validate states the outside names for both.
    value = Aliased.model_validate({"fullName": "Ann", "lvl": 2})
    assert isinstance(codec.schema, dict)
    assert [f["name"] for f in codec.schema["fields"]] == ["full_name", "level"]
    assert codec.decode(codec.encode(value, ctx), ctx) == value


def test_one_codec_for_two_topics_registers_and_checks_each_subject(
    embedded: EmbeddedRegistry,
) -> None:
    first, second = (
        SerdeContext(f"a{uuid.uuid4().hex[:8]}"),
        SerdeContext(f"b{uuid.uuid4().hex[:8]}"),
    )
    AvroCodec(CustomerV3, embedded).encode(CustomerV3(1, "Ann", 2), second)
    codec = AvroCodec(CustomerV1, embedded, compatibility="FULL")
    codec.encode(CustomerV1(1, "Ann"), first)
    # The first topic's registration must not stand in for the second's check: the second's
    # history has a field without a default that CustomerV1 drops (not FORWARD, so not FULL).
    with pytest.raises(IncompatibleSchema, match=rf"{second.subject}.*tier"):
        codec.encode(CustomerV1(1, "Ann"), second)
    assert embedded.versions(first.subject) == [1]
    assert embedded.versions(second.subject) == [1]


class CountingRegistry:
    """A registry that counts schema fetches by id (what decoding a record may call)."""

    def __init__(self, inner: EmbeddedRegistry) -> None:
        self.inner = inner
        self.fetches = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def get_schema(self, schema_id: int) -> AvroSchema:
        self.fetches += 1
        return self.inner.get_schema(schema_id)


def test_without_lookup_an_unseen_writer_schema_is_a_signal_not_a_registry_call(
    embedded: EmbeddedRegistry, topic: str
) -> None:
    data = AvroCodec(Address, embedded).encode(Address("Oslo", "0150"), SerdeContext(topic))
    counting = CountingRegistry(embedded)
    reader = AvroCodec(Address, counting)  # a Registry by duck typing
    offline = SerdeContext(topic, lookup=False)
    with pytest.raises(SchemaLookupNeeded) as raised:
        reader.decode(data, offline)
    assert counting.fetches == 0
    assert raised.value.schema_id == int.from_bytes(data[1:5], "big")
    raised.value.load()  # what a caller runs off its event loop
    assert counting.fetches == 1
    assert reader.decode(data, offline) == Address("Oslo", "0150")
    assert reader.decode(data, offline) == Address("Oslo", "0150")
    assert counting.fetches == 1


def test_loading_an_id_the_registry_does_not_know_raises_the_decode_error(
    embedded: EmbeddedRegistry, topic: str
) -> None:
    data = b"\x00" + (987_654).to_bytes(4, "big") + b"\x02"
    with pytest.raises(SchemaLookupNeeded) as raised:
        AvroCodec(Address, embedded).decode(data, SerdeContext(topic, lookup=False))
    with pytest.raises(DecodeError, match="unknown to the registry"):
        raised.value.load()


def test_a_renamed_model_is_refused_with_the_avro_name_that_keeps_it(
    registry: Registry, topic: str
) -> None:
    @dataclasses.dataclass
    class Customer:
        __avro_namespace__ = "shop"
        id: int
        name: str

    @dataclasses.dataclass
    class Client:  # Customer renamed, in another module
        __avro_namespace__ = "crm"
        id: int
        name: str

    @dataclasses.dataclass
    class KeptClient:  # the fix the message gives
        __avro_name__ = "Customer"
        __avro_namespace__ = "shop"
        id: int
        name: str

    ctx = SerdeContext(topic)
    old = AvroCodec(Customer, registry, compatibility="FULL_TRANSITIVE").encode(
        Customer(1, "Ada"), ctx
    )
    with pytest.raises(IncompatibleSchema) as caught:
        AvroCodec(Client, registry).encode(Client(2, "Bob"), ctx)
    message = str(caught.value)
    assert 'crm.Client was registered as shop.Customer: set __avro_name__ = "Customer" and ' in (
        message
    )
    assert '__avro_namespace__ = "shop"' in message
    assert "docs/runtime.md" in message
    kept = AvroCodec(KeptClient, registry)
    assert kept.decode(old, ctx) == KeptClient(1, "Ada")
    assert kept.decode(kept.encode(KeptClient(2, "Bob"), ctx), ctx) == KeptClient(2, "Bob")
    assert registry.versions(f"{topic}-value") == [1]  # the very schema registered before


def test_a_renamed_nested_record_is_named_and_other_breaks_get_no_rename_advice(
    registry: Registry, topic: str
) -> None:
    ctx = SerdeContext(topic)
    AvroCodec(Home, registry, compatibility="FULL_TRANSITIVE").encode(Home(Street("Main")), ctx)
    with pytest.raises(IncompatibleSchema) as caught:
        AvroCodec(HomeOnARoad, registry).encode(HomeOnARoad(Road("Main")), ctx)
    assert 'shop.Road was registered as shop.Street: set __avro_name__ = "Street" on' in str(
        caught.value
    )
    assert "__avro_namespace__" not in str(caught.value)
    with pytest.raises(IncompatibleSchema) as broken:
        AvroCodec(HomeWithSize, registry).encode(HomeWithSize(3), ctx)
    assert "__avro_name__" not in str(broken.value)


def test_a_model_moved_to_another_module_stays_compatible(registry: Registry, topic: str) -> None:
    @dataclasses.dataclass
    class Customer:
        __avro_namespace__ = "__main__"  # first written in a script
        id: int

    @dataclasses.dataclass
    class Moved:
        __avro_name__ = "Customer"
        __avro_namespace__ = "shop.models"  # then imported from a module
        id: int

    ctx = SerdeContext(topic)
    old = AvroCodec(Customer, registry, compatibility="FULL_TRANSITIVE").encode(Customer(1), ctx)
    moved = AvroCodec(Moved, registry)
    assert moved.decode(moved.encode(Moved(2), ctx), ctx) == Moved(2)
    assert moved.decode(old, ctx) == Moved(1)
    assert registry.versions(f"{topic}-value") == [1, 2]
