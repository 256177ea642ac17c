"""Python models <-> Avro: dataclasses and pydantic v2 models become Avro schemas and back.

Mapping (``avro_schema(model)``)::

    int -> long             float -> double          bool -> boolean
    str -> string           bytes -> bytes           X | None -> ["null", X], default null
    list[X] -> array        dict[str, X] -> map      Enum -> enum (symbols = member names)
    datetime -> long timestamp-micros (Annotated[datetime, TIMESTAMP_MILLIS] for millis), UTC
    date -> int date        UUID -> string uuid
    Decimal -> bytes decimal, precision 38 / scale 9 unless Annotated[Decimal, DecimalSpec(p, s)]
               (pydantic's ``Field(max_digits=p, decimal_places=s)`` works too)
    dataclass / BaseModel -> record, nested records by name

An enum may set ``__avro_default__`` to one of its member names: readers then map symbols added
later to it, which is what lets a symbol be added under FULL compatibility. A record or enum is
named after its class: ``name`` is the class name and ``namespace`` its module,
unless the class sets ``__avro_name__`` / ``__avro_namespace__`` (do, to rename a class: Avro
matches records by name; a move to another module only changes the namespace, which matching
ignores). Naive datetimes are taken as UTC; decoding
gives aware UTC datetimes. A Decimal must fit its precision and scale exactly (trailing zeros
aside): one that does not is refused, never rounded. Decoding builds instances without re-running ``__init__`` when a model
has nothing to run (no ``__post_init__``, validators or constraints), and through the constructor
or ``model_validate`` otherwise. A hand-written schema (``.avsc`` path, JSON text or dict) also works;
its values are plain dicts, handed to fastavro as they are (give them aware datetimes: fastavro
takes naive ones as local time).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import types
import typing
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Union

from ferryman.errors import SchemaError
from ferryman.schema.converters import (
    UTC_INLINE,
    Convert,
    Mapped,
    by_type,
    checked,
    compile_record,
    decimal_fitter,
    each,
    each_value,
    enum_name,
    exact_decimals,
    is_pydantic,
    late_record,
    or_none,
    register_record,
    utc,
)
from ferryman.schema.parsing import AvroSchema, load_schema


@dataclass(frozen=True, slots=True)
class DecimalSpec:
    """Precision and scale of a Decimal field: ``Annotated[Decimal, DecimalSpec(18, 2)]``."""

    precision: int
    scale: int


DEFAULT_DECIMAL = DecimalSpec(38, 9)
"""Decimals without a spec: 38 digits, 9 after the point (a value with more places is refused)."""


class _TimestampMillis:
    def __repr__(self) -> str:
        return "TIMESTAMP_MILLIS"


TIMESTAMP_MILLIS = _TimestampMillis()
"""Marker: ``Annotated[datetime, TIMESTAMP_MILLIS]`` stores milliseconds instead of microseconds."""

_PRIMITIVES: dict[type, str] = {
    bool: "boolean",
    int: "long",
    float: "double",
    str: "string",
    bytes: "bytes",
}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class Binding:
    """A model and its Avro schema, with the converters between instances and fastavro data."""

    model: Any
    schema: AvroSchema
    to_avro: Convert | None  # None: the value is already what fastavro writes
    from_avro: Convert | None  # None: what fastavro reads is already the value


def is_record_model(model: Any) -> bool:
    """True for a dataclass or pydantic model class."""
    return isinstance(model, type) and (dataclasses.is_dataclass(model) or is_pydantic(model))


def avro_schema(model: Any) -> AvroSchema:
    """The Avro schema (parsed JSON) of a dataclass, pydantic model, supported type or ``.avsc``."""
    return binding(model).schema


def binding(model: Any) -> Binding:
    """The (cached) binding of ``model``: a model class, a supported type, or a schema source."""
    if isinstance(model, (str, Path, Mapping, list)):
        return Binding(None, load_schema(model), None, None)
    try:
        return _cached_binding(model)
    except TypeError as exc:  # unhashable annotation objects
        raise SchemaError(
            f"{model!r} cannot be mapped to Avro ({exc}); pass a dataclass, a pydantic model, a "
            "supported type or a schema (.avsc path, JSON text or dict)"
        ) from exc


@functools.cache
def _cached_binding(model: Any) -> Binding:
    mapped = _Mapper().map(model, (), model_name(model))
    return Binding(model, mapped.schema, mapped.enc, mapped.dec)


def model_name(model: Any) -> str:
    return getattr(model, "__name__", repr(model))


class _Mapper:
    """Maps one model; remembers the named types already emitted so repeats become references."""

    def __init__(self) -> None:
        self.named: dict[str, Any] = {}
        self.records: dict[Any, Mapped] = {}

    def map(self, tp: Any, meta: tuple[Any, ...], where: str) -> Mapped:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            base, *extra = typing.get_args(tp)
            return self.map(base, (*meta, *extra), where)
        if origin in (Union, types.UnionType):
            return self._union(tp, meta, where)
        if origin is list:
            (item,) = typing.get_args(tp) or (Any,)
            inner = self.map(item, (), f"{where}[]")
            enc = each(inner.enc)
            dec = each(inner.dec)
            return Mapped({"type": "array", "items": inner.schema}, enc, dec)
        if origin is dict:
            key, value = typing.get_args(tp) or (Any, Any)
            if key is not str:
                raise SchemaError(
                    f"{where}: dict keys must be str (Avro maps have string keys), not {key!r}"
                )
            inner = self.map(value, (), f"{where}{{}}")
            return Mapped(
                {"type": "map", "values": inner.schema},
                each_value(inner.enc),
                each_value(inner.dec),
            )
        if tp is dt.datetime:
            millis = any(m is TIMESTAMP_MILLIS for m in meta)
            logical = "timestamp-millis" if millis else "timestamp-micros"
            return Mapped(
                {"type": "long", "logicalType": logical}, utc, check=dt.datetime, inline=UTC_INLINE
            )
        if tp is dt.date:
            return Mapped({"type": "int", "logicalType": "date"})
        if tp is Decimal:
            spec = _decimal_spec(meta)
            return Mapped(
                {
                    "type": "bytes",
                    "logicalType": "decimal",
                    "precision": spec.precision,
                    "scale": spec.scale,
                },
                decimal_fitter(spec.precision, spec.scale, where),
                check=Decimal,
            )
        if tp is uuid.UUID:
            # Inline in records, whose converter checks the class already; a call elsewhere.
            uuid_schema = {"type": "string", "logicalType": "uuid"}
            return Mapped(uuid_schema, checked(uuid.UUID, where), check=uuid.UUID, inline="{0}")
        if tp in _PRIMITIVES:
            return Mapped(_PRIMITIVES[tp], check=tp if tp in (bool, int) else None)
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return self._enum(tp)
        if is_record_model(tp):
            return self._record(tp)
        raise SchemaError(
            f"{where}: type {tp!r} has no Avro mapping; use int, float, bool, str, bytes, datetime, "
            "date, Decimal, UUID, an Enum, list[X], dict[str, X], X | None, a dataclass or a "
            "pydantic model"
        )

    def _fullname(self, cls: type) -> tuple[str, str]:
        name = getattr(cls, "__avro_name__", None) or cls.__name__
        namespace = getattr(cls, "__avro_namespace__", None) or cls.__module__
        return name, namespace

    def _claim(self, cls: type) -> str | None:
        """The full name to reference if ``cls`` was emitted already; registers it otherwise."""
        name, namespace = self._fullname(cls)
        full = f"{namespace}.{name}"
        seen = self.named.get(full)
        if seen is cls:
            return full
        if seen is not None:
            raise SchemaError(
                f"two different classes are both named {full!r} in one schema; rename one or set "
                "__avro_name__ / __avro_namespace__ on it"
            )
        self.named[full] = cls
        return None

    def _enum(self, cls: type[enum.Enum]) -> Mapped:
        members = cls._member_map_
        enc: Convert = enum_name
        dec: Convert = members.__getitem__
        ref = self._claim(cls)
        if ref is not None:
            return Mapped(ref, enc, dec, check=cls, inline="{0}._name_")
        name, namespace = self._fullname(cls)
        schema = {"type": "enum", "name": name, "namespace": namespace, "symbols": list(members)}
        default = getattr(cls, "__avro_default__", None)
        if default is not None:
            if default not in members:
                raise SchemaError(
                    f"{cls.__qualname__}.__avro_default__ {default!r} is not one of its symbols "
                    f"({', '.join(members)}); name one of them"
                )
            schema["default"] = default
        return Mapped(schema, enc, dec, check=cls, inline="{0}._name_")

    def _union(self, tp: Any, meta: tuple[Any, ...], where: str) -> Mapped:
        args = typing.get_args(tp)
        nullable = type(None) in args
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            inner = self.map(rest[0], meta, where)
            if not nullable:
                return inner
            return Mapped(["null", inner.schema], or_none(inner.enc), or_none(inner.dec))
        branches = [self.map(a, meta, where) for a in rest]
        # Branches that only check or normalize a value of their class (timestamps, decimals,
        # UUIDs) can be told apart by that class; records and enums need a converter per branch.
        if any(b.dec or (b.enc and b.check is None) for b in branches):
            raise SchemaError(
                f"{where}: unions of several records, enums or converted types are not supported; "
                "use X | None, or one record with optional fields"
            )
        schema = [b.schema for b in branches]
        convert = [(b.check, b.enc) for b in branches if b.enc and b.check]
        enc = by_type(convert) if convert else None
        return Mapped(["null", *schema] if nullable else schema, enc)

    def _record(self, cls: type) -> Mapped:
        ref = self._claim(cls)
        if ref is not None and cls in self.records:
            done = self.records[cls]
            return Mapped(ref, done.enc, done.dec)
        if ref is not None:  # recursive reference while the record is being built
            enc, dec = late_record(cls)
            return Mapped(ref, enc, dec)
        name, namespace = self._fullname(cls)
        fields: list[dict[str, Any]] = []
        mapped_fields: list[tuple[str, Mapped]] = []
        for fname, hint, default in _fields_of(cls):
            mapped = self.map(hint, (), f"{cls.__name__}.{fname}")
            schema = mapped.schema
            field: dict[str, Any] = {"name": fname, "type": schema}
            if default is not _NO_DEFAULT:
                if isinstance(schema, list) and default is not None and schema[0] == "null":
                    # Avro: a union's default must match its first branch.
                    field["type"] = schema = [*schema[1:], "null"]
                field["default"] = _json_default(default, mapped, f"{cls.__name__}.{fname}")
            elif isinstance(schema, list) and schema and schema[0] == "null":
                field["default"] = None
            fields.append(field)
            mapped_fields.append((fname, mapped))
        schema_out = {"type": "record", "name": name, "namespace": namespace, "fields": fields}
        enc_fn, dec_fn = compile_record(cls, mapped_fields)
        register_record(cls, enc_fn, dec_fn, [(n, m.enc) for n, m in mapped_fields])
        result = Mapped(schema_out, enc_fn, dec_fn)
        self.records[cls] = result
        return result


class _NoDefault:
    pass


_NO_DEFAULT: Any = _NoDefault()


def _fields_of(cls: type) -> list[tuple[str, Any, Any]]:
    """(name, type hint, default or _NO_DEFAULT) of each field of a dataclass or pydantic model."""
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except NameError as exc:
        raise SchemaError(
            f"cannot resolve the annotations of {cls.__qualname__} ({exc}); define the classes it "
            "refers to at module level"
        ) from exc
    out: list[tuple[str, Any, Any]] = []
    if dataclasses.is_dataclass(cls):
        for f in dataclasses.fields(cls):
            default: Any = _NO_DEFAULT
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            out.append((f.name, hints[f.name], default))
        return out
    for fname, info in cls.model_fields.items():  # type: ignore[attr-defined]
        hint = hints.get(fname, info.annotation)
        if info.metadata:
            hint = typing.Annotated[(hint, *info.metadata)]
        default = _NO_DEFAULT
        if not info.is_required():
            default = info.get_default(call_default_factory=True)
        out.append((fname, hint, default))
    return out


def _decimal_spec(meta: tuple[Any, ...]) -> DecimalSpec:
    for m in meta:
        if isinstance(m, DecimalSpec):
            return m
    # pydantic's Field(max_digits=, decimal_places=) and annotated-types style objects
    precision = next((m.max_digits for m in meta if getattr(m, "max_digits", None)), None)
    scale = next(
        (m.decimal_places for m in meta if getattr(m, "decimal_places", None) is not None), None
    )
    if precision is None and scale is None:
        return DEFAULT_DECIMAL
    return DecimalSpec(precision or DEFAULT_DECIMAL.precision, scale or 0)


def _json_default(value: Any, mapped: Mapped, where: str) -> Any:
    """A Python default as Avro writes defaults in a schema (JSON; logical types as their base)."""
    if mapped.enc is not None and value is not None:
        with exact_decimals():
            value = mapped.enc(value)
    schema = mapped.schema
    if isinstance(schema, list) and value is not None:
        schema = schema[0]  # Avro: a union's default is a value of its first branch
    return _jsonable(value, schema, where)


def _jsonable(value: Any, schema: Any, where: str) -> Any:
    """``value`` as JSON for ``schema`` (None when only a reference to a named type is known)."""
    if isinstance(schema, list):  # a union inside a record default: the value's branch
        schema = next((b for b in schema if b != "null"), None)
    logical = schema.get("logicalType") if isinstance(schema, dict) else None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, dt.datetime):
        delta = utc(value) - _EPOCH
        micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        return micros // 1000 if logical == "timestamp-millis" else micros
    if isinstance(value, dt.date):
        return (value - dt.date(1970, 1, 1)).days
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, Decimal) and logical == "decimal":
        sign, digits, exp = value.as_tuple()  # finite, exp >= -scale: its converter checked it
        unscaled = int("".join(map(str, digits))) * 10 ** (int(exp) + schema["scale"])
        unscaled = -unscaled if sign else unscaled
        size = (unscaled.bit_length() + 8) // 8
        return unscaled.to_bytes(size, "big", signed=True).decode("latin-1")
    kind = schema.get("type") if isinstance(schema, dict) else None
    if isinstance(value, list):
        items = schema.get("items") if kind == "array" else None
        return [_jsonable(v, items, where) for v in value]
    if isinstance(value, dict):
        if kind == "record":
            types = {f["name"]: f["type"] for f in schema["fields"]}
            return {k: _jsonable(v, types.get(k), where) for k, v in value.items()}
        values = schema.get("values") if kind == "map" else None
        return {k: _jsonable(v, values, where) for k, v in value.items()}
    raise SchemaError(
        f"{where}: the default {value!r} cannot be written in an Avro schema; use a default of "
        "None, a number, a string, a Decimal, a date or datetime, an Enum member, a list, a dict "
        "or a nested model"
    )
