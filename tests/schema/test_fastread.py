"""Generated Avro readers: the same values as fastavro's, and the same refusals of bad bytes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import random
import struct
import uuid
from decimal import Decimal
from typing import Any

import fastavro
import pytest

from ferryman.errors import DecodeError
from ferryman.schema import AvroCodec, EmbeddedRegistry, SerdeContext
from ferryman.schema.fastread import body_reader

EVERY_KIND = {
    "type": "record",
    "name": "Every",
    "namespace": "test",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "small", "type": "int"},
        {"name": "name", "type": "string"},
        {"name": "ratio", "type": "float"},
        {"name": "amount", "type": "double"},
        {"name": "ok", "type": "boolean"},
        {"name": "raw", "type": "bytes"},
        {"name": "nothing", "type": "null"},
        {"name": "maybe", "type": ["null", "string"]},
        {"name": "either", "type": ["null", "long", "string", "double"]},
        {"name": "color", "type": {"type": "enum", "name": "Color", "symbols": ["R", "G", "B"]}},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "at_us", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "local", "type": {"type": "long", "logicalType": "local-timestamp-millis"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "clock", "type": {"type": "int", "logicalType": "time-millis"}},
        {"name": "ref", "type": {"type": "string", "logicalType": "uuid"}},
        {
            "name": "price",
            "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 3},
        },
        {"name": "odd", "type": {"type": "long", "logicalType": "not-a-known-one"}},
        {
            "name": "when",
            "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}],
        },
        {
            "name": "inner",
            "type": {
                "type": "record",
                "name": "Inner",
                "fields": [
                    {"name": "a", "type": "int"},
                    {
                        "name": "b",
                        "type": [
                            "null",
                            {
                                "type": "record",
                                "name": "Deep",
                                "fields": [{"name": "c", "type": "string"}],
                            },
                        ],
                    },
                ],
            },
        },
    ],
}


def random_value(rng: random.Random) -> dict[str, Any]:
    def some_long() -> int:  # one-byte, two-byte, and up to ten-byte varints
        return rng.choice(
            [rng.randint(-64, 63), rng.randint(-9000, 9000), rng.randint(-(2**63), 2**63 - 1)]
        )

    return {
        "id": some_long(),
        "small": rng.randint(-(2**31), 2**31 - 1),
        "name": rng.choice(["", "å" * rng.randint(0, 90), "x" * rng.randint(60, 300)]),
        "ratio": rng.random(),
        "amount": rng.uniform(-1e300, 1e300),
        "ok": rng.random() < 0.5,
        "raw": rng.randbytes(rng.randint(0, 70)),
        "nothing": None,
        "maybe": rng.choice([None, "", "some"]),
        "either": rng.choice([None, some_long(), "s", 2.5]),
        "color": rng.choice("RGB"),
        "at": dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
        + dt.timedelta(milliseconds=some_long() % 10**12),
        "at_us": dt.datetime(1969, 7, 20, tzinfo=dt.UTC)
        + dt.timedelta(microseconds=rng.randint(0, 10**15)),
        "local": dt.datetime(2000, 1, 1)
        + dt.timedelta(milliseconds=rng.randint(-(10**11), 10**11)),
        "day": dt.date(1970, 1, 1) + dt.timedelta(days=rng.randint(-30000, 30000)),
        "clock": dt.time(
            rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59), 1000 * rng.randint(0, 999)
        ),
        "ref": uuid.UUID(int=rng.getrandbits(128)),
        "price": Decimal(rng.randint(-(10**12) + 1, 10**12 - 1)).scaleb(-3),
        "odd": some_long(),
        "when": rng.choice([None, dt.datetime(2030, 5, 5, 1, 2, 3, 456789, tzinfo=dt.UTC)]),
        "inner": {"a": rng.randint(-5, 5), "b": rng.choice([None, {"c": "deep"}])},
    }


def fastavro_read(data: bytes, schema: Any) -> Any:
    fo = io.BytesIO(data)
    value = fastavro.schemaless_reader(fo, schema, None)
    assert fo.tell() == len(data)
    return value


def written(schema: Any, value: Any) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema, value)
    return out.getvalue()


def test_a_generated_reader_reads_what_fastavro_reads() -> None:
    schema = fastavro.parse_schema(EVERY_KIND)
    read = body_reader(schema)
    assert read is not None
    rng = random.Random(20261201)
    for _ in range(3000):
        data = b"HEAD!" + written(schema, random_value(rng))
        value, end = read(data, 5)
        assert end == len(data)
        expected = fastavro_read(data[5:], schema)
        assert value == expected
        assert list(value) == list(expected)  # fields in the schema's order
        assert [type(v) for v in value.values()] == [type(v) for v in expected.values()]


@pytest.mark.parametrize("primitive", ["long", "int", "string", "bytes", "double", "boolean"])
def test_a_primitive_schema_is_read_alike(primitive: str) -> None:
    every: dict[str, list[Any]] = {
        "long": [
            *(0, -1, 63, -64, 64, 8191, -8192, 8192, -8193),  # one and two bytes, and past
            *(2**20 - 1, -(2**20), 2**20, -(2**20) - 1),  # three bytes (inline), and four
            *(2**40, -(2**63), 2**63 - 1),
        ],
        "int": [0, 1, -(2**31), 2**31 - 1],
        "string": ["", "k", "ключ" * 30],
        "bytes": [b"", b"\x00\xff" * 40],
        "double": [0.0, -1.5, 1e308],
        "boolean": [True, False],
    }
    samples = every[primitive]
    read = body_reader(fastavro.parse_schema(primitive))
    assert read is not None
    for sample in samples:
        data = written(primitive, sample)
        assert read(data, 0) == (fastavro_read(data, primitive), len(data))


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "array", "items": "long"},
        {"type": "map", "values": "string"},
        {"type": "fixed", "name": "F", "size": 4},
        {"type": "fixed", "name": "D", "size": 8, "logicalType": "decimal", "precision": 9},
        {
            "type": "record",
            "name": "WithList",
            "fields": [{"name": "tags", "type": {"type": "array", "items": "string"}}],
        },
    ],
)
def test_what_is_not_generated_is_left_to_fastavro(schema: Any) -> None:
    assert body_reader(fastavro.parse_schema(schema)) is None


def test_bad_bytes_are_refused_not_misread() -> None:
    schema = fastavro.parse_schema(EVERY_KIND)
    read = body_reader(schema)
    assert read is not None
    data = written(schema, random_value(random.Random(3)))
    for cut in range(len(data)):  # every truncation raises, or stops short of the end
        try:
            _, end = read(data[:cut], 0)
        except (IndexError, EOFError, ValueError, UnicodeDecodeError, struct.error):
            continue
        assert end <= cut
    bad_union = bytearray(written(fastavro.parse_schema(["null", "long"]), 5))
    bad_union[0] = 4  # branch 2 of a two-branch union
    union_read = body_reader(fastavro.parse_schema(["null", "long"]))
    assert union_read is not None
    with pytest.raises(ValueError, match="union branch 2 of 2"):
        union_read(bytes(bad_union), 0)


@dataclasses.dataclass
class Account:
    id: int
    owner: str
    balance: int


@dataclasses.dataclass(frozen=True)
class AccountKey:
    region: str
    number: int


def test_the_codec_reports_a_corrupt_body_read_by_a_generated_reader(tmp_path: Any) -> None:
    registry = EmbeddedRegistry(tmp_path / "registry.db")
    try:
        codec = AvroCodec(Account, registry)
        ctx = SerdeContext("accounts", "value")
        data = codec.encode(Account(7, "ann", 100), ctx)
        assert codec.decode(data, ctx) == Account(7, "ann", 100)
        with pytest.raises(DecodeError, match="cannot be read"):
            codec.decode(data[:-2], ctx)
        with pytest.raises(DecodeError, match="1 bytes left after the body"):
            codec.decode(data + b"\x00", ctx)
    finally:
        registry.close()


def test_decoded_keys_are_remembered_only_when_immutable(tmp_path: Any) -> None:
    registry = EmbeddedRegistry(tmp_path / "registry.db")
    try:
        ctx = SerdeContext("accounts", "key")
        ints = AvroCodec(int, registry)
        data = ints.encode(12345, ctx)
        assert ints.decode(data, ctx) == 12345
        assert ints.decode(data, ctx) == 12345  # from the memo
        with pytest.raises(DecodeError):
            ints.decode(data[:-1] + b"\xff", ctx)  # other bytes are decoded, and refused
        uuids = AvroCodec(uuid.UUID, registry)
        key = uuid.uuid4()
        assert uuids.decode(uuids.encode(key, SerdeContext("ids", "key")), ctx) == key
        records = AvroCodec(AccountKey, registry)
        raw = records.encode(AccountKey("eu", 1), SerdeContext("by-region", "key"))
        first = records.decode(raw, ctx)
        assert first == AccountKey("eu", 1)
        assert records.decode(raw, ctx) is not first  # a record key is decoded afresh each time
    finally:
        registry.close()
