"""The Avro codec: fastavro bodies in the Confluent wire format.

Wire format (keys and values alike): magic byte ``0``, the schema id as 4 bytes big-endian, then
the Avro binary body. Any Schema-Registry-aware Kafka tool reads it.
"""

from __future__ import annotations

import copy
import decimal
import functools
import json
import uuid
from collections.abc import Mapping
from io import BytesIO
from typing import Any

import fastavro
from fastavro.validation import ValidationError, validate

from ferryman.errors import (
    DecodeError,
    FerrymanError,
    IncompatibleSchema,
    SchemaError,
    SchemaNotFound,
)
from ferryman.schema.base import SchemaLookupNeeded, SerdeContext
from ferryman.schema.compat import Compatibility, renamed_types
from ferryman.schema.converters import exact_decimals, failing_field
from ferryman.schema.fastread import Reader, body_reader
from ferryman.schema.models import Binding, binding, model_name
from ferryman.schema.parsing import canonical, parse
from ferryman.schema.registry import Registry

MAGIC = 0
HEADER_SIZE = 5

_writer = fastavro.schemaless_writer
_reader = fastavro.schemaless_reader

MEMO_SIZE = 100_000
"""Decoded keys remembered per codec (a few MB at most); the memo starts over when full."""

_IMMUTABLE = frozenset({int, str, bytes, float, bool, uuid.UUID, decimal.Decimal})

_Schemas = tuple[Any, Any, tuple[str, ...], Reader | None]
"""Per writer schema id: the parsed writer schema, the reader schema when it differs (None:
the same), top-level fields whose defaults must be copied, and a generated reader (None: read
with fastavro)."""


def frame(schema_id: int) -> bytes:
    """The 5-byte wire-format header for ``schema_id``."""
    return bytes((MAGIC,)) + schema_id.to_bytes(4, "big")


class AvroCodec:
    """Encodes model instances to the Confluent wire format and decodes them back.

    ``model`` is a dataclass, a pydantic model, a supported type (``int``, ``str``, ``UUID``...)
    or a hand-written schema (``.avsc`` path, JSON text or dict: values are then dicts). The
    schema is registered once per subject, on first encode; ``compatibility``, when given, is
    set on the subject before that.
    """

    def __init__(self, model: Any, registry: Registry, *, compatibility: str | None = None) -> None:
        self.binding: Binding = binding(model)
        self.model = model
        self.registry = registry
        # Checked now, so a misspelt level fails where the topic is declared, not at first send.
        self.compatibility = None if compatibility is None else Compatibility.of(compatibility)
        self.schema = self.binding.schema
        self._parsed = parse(self.schema)
        self._fast = body_reader(self._parsed)
        self._canonical = canonical(self.schema)
        self._to = self.binding.to_avro
        self._from = self.binding.from_avro
        self._cls = model if isinstance(model, type) else None
        self._short_strings = model is str and self.schema == "string" and self._to is None
        self._headers: dict[str, bytes] = {}
        # the last context encoded with and its header: no subject formatted per record
        self._last: tuple[SerdeContext | None, bytes] = (None, b"")
        # schema id -> (writer schema, reader schema or None when they are the same)
        self._readers: dict[bytes, _Schemas] = {}
        # Keys (and primitive values) repeat: an entity topic's keys are its entities. Their
        # wire bytes -> the decoded, immutable value, for codecs of schemas that are not
        # records, enums or containers (whose values may be mutable).
        self._memo: dict[bytes, Any] | None = (
            {} if isinstance(self._parsed, str) or _is_primitive(self._parsed) else None
        )

    def encode(self, value: Any, ctx: SerdeContext) -> bytes:
        """``value`` in the wire format; SchemaError, before anything is sent, if it does not fit."""
        last = self._last
        if ctx is last[0]:  # a sender passes its topic's one context on every record
            header = last[1]
        else:
            known = self._headers.get(ctx.subject)
            header = self._register(ctx.subject) if known is None else known
            self._last = (ctx, header)
        if self._short_strings and isinstance(value, str) and len(value) < 64:
            # a string key: length (zigzag, one byte below 64 bytes) and UTF-8, as fastavro
            # writes it, without its call (a tenth of a send's CPU)
            data = value.encode()
            if len(data) < 64:
                return header + bytes((len(data) << 1,)) + data
        if value.__class__ is self._cls:  # exactly the model: its converters already checked it
            to = self._to
            try:
                datum = value if to is None else to(value)
                buf = BytesIO()
                buf.write(header)
                _writer(buf, self._parsed, datum)
                return buf.getvalue()
            except Exception:
                pass
        return self._encode_other(value, header, ctx)

    def decode(self, data: bytes, ctx: SerdeContext) -> Any:
        """The value in ``data``; DecodeError with ``ctx``'s coordinates when it cannot be read."""
        memo = self._memo
        if memo is not None:
            value = memo.get(data)
            if value is not None:
                return value
        # Keyed by the 5 header bytes: a hit proves the magic byte and skips parsing the id.
        schemas = self._readers.get(data[:HEADER_SIZE]) if data is not None else None
        if schemas is None:
            if data is None or len(data) < HEADER_SIZE or data[0] != MAGIC:
                raise self._bad_frame(data, ctx)
            schema_id = _id_of(data)
            if not ctx.lookup:
                load = functools.partial(self._load_writer, schema_id, ctx)
                raise SchemaLookupNeeded(schema_id, load)
            schemas = self._load_writer(schema_id, ctx)
        fast = schemas[3]
        datum: Any
        try:
            if fast is not None:
                datum, end = fast(data, HEADER_SIZE)
            else:
                fo = BytesIO(data)
                fo.seek(HEADER_SIZE)
                datum = _reader(fo, schemas[0], schemas[1])
                for name in schemas[2]:  # fastavro hands out the schema's own default object
                    datum[name] = copy.deepcopy(datum[name])
                end = fo.tell()
        except Exception as exc:
            raise _decode_error(
                f"the body of a message with schema id {_id_of(data)} cannot be read "
                f"({type(exc).__name__}: {str(exc)[:300]}); it is truncated, corrupt, not written "
                "with that schema, or the model cannot read that schema",
                ctx,
            ) from exc
        if end != len(data):
            raise _decode_error(
                f"{len(data) - end} bytes left after the body of a message with schema id "
                f"{_id_of(data)}; it was not written with that schema",
                ctx,
            )
        fr = self._from
        if fr is not None:
            try:
                datum = fr(datum)
            except Exception as exc:
                raise _decode_error(
                    f"the message does not fit {model_name(self.model)} ({type(exc).__name__}: "
                    f"{exc}); is the model in step with the topic's schema?",
                    ctx,
                ) from exc
        if memo is not None and datum.__class__ in _IMMUTABLE:
            if len(memo) >= MEMO_SIZE:
                memo.clear()
            memo[data] = datum
        return datum

    def _register(self, subject: str) -> bytes:
        if self.compatibility is not None:
            current = self.registry.get_compatibility(subject)
            if current != self.compatibility:
                self.registry.set_compatibility(self.compatibility, subject)
        try:
            schema_id = self.registry.register(subject, self.schema)
        except IncompatibleSchema as exc:
            hint = self._rename_hint(subject)
            if hint is None:
                raise
            raise IncompatibleSchema(f"{exc}. {hint}") from exc
        header = frame(schema_id)
        self._headers[subject] = header
        self._readers.setdefault(header, (self._parsed, None, (), self._fast))
        return header

    def _rename_hint(self, subject: str) -> str | None:
        """How to keep a renamed model class's registered Avro name, or None if none was renamed.

        Avro matches records by name, so a renamed class breaks compatibility; the registry's
        message talks of aliases, while the fix for a model is one class attribute.
        """
        if self._cls is None:  # a hand-written schema: the registry's alias advice fits
            return None
        try:
            registered = self.registry.latest(subject).schema
        except FerrymanError:
            return None
        fixes = []
        for new, old in renamed_types(self.schema, registered):
            old_namespace, _, old_name = old.rpartition(".")
            setting = f'__avro_name__ = "{old_name}"'
            if old_namespace and old_namespace != new.rpartition(".")[0]:
                setting += f' and __avro_namespace__ = "{old_namespace}"'
            fixes.append(f"{new} was registered as {old}: set {setting} on its class")
        if not fixes:
            return None
        return (
            "If you renamed a model class (or moved it to another module), keep its registered "
            f"Avro name: {'; '.join(fixes)} (see 'Renaming or moving a model' in docs/runtime.md)"
        )

    def _encode_other(self, value: Any, header: bytes, ctx: SerdeContext) -> bytes:
        """The slow path: decimals fitted exactly, dicts validated in full, subclasses, failures."""
        with exact_decimals():
            return self._encode_exactly(value, header, ctx)

    def _encode_exactly(self, value: Any, header: bytes, ctx: SerdeContext) -> bytes:
        to, cls = self._to, self._cls
        if isinstance(value, Mapping):
            datum: Any = dict(value)
            self._validate(datum, ctx)
        elif cls is not None and to is not None and not isinstance(value, cls):
            raise SchemaError(
                f"{ctx.topic} {ctx.field}: expected a {model_name(self.model)}, got "
                f"{type(value).__name__}; pass an instance of the topic's model"
            )
        else:
            try:
                datum = value if to is None else to(value)
            except SchemaError as exc:
                raise SchemaError(f"{ctx.topic} {ctx.field}: {exc}") from exc
            except Exception as exc:
                raise self._explain(value, exc, ctx) from exc
            if to is None or cls is None:  # plain values, union and list models: checked in full
                self._validate(datum, ctx)
        buf = BytesIO()
        buf.write(header)
        try:
            _writer(buf, self._parsed, datum)
        except Exception as exc:
            raise self._explain(value, exc, ctx) from exc
        return buf.getvalue()

    def _validate(self, datum: Any, ctx: SerdeContext) -> None:
        try:
            validate(datum, self._parsed, raise_errors=True)
        except Exception as exc:
            field = "" if isinstance(exc, ValidationError) else self._locate(datum)
            if field:
                exc = ValueError(f"field {field}: {exc}")
            raise SchemaError(
                f"{ctx.topic} {ctx.field} does not fit its schema: {_validation_text(exc)}; "
                "fix the value before sending"
            ) from exc

    def _explain(self, value: Any, exc: Exception, ctx: SerdeContext) -> SchemaError:
        """A SchemaError naming the field that does not fit (fastavro's validation finds it)."""
        try:
            datum = self._to(value) if self._to is not None else value
        except SchemaError as bad:
            return SchemaError(f"{ctx.topic} {ctx.field}: {bad}")
        except Exception as bad:
            field = failing_field(value)
            where = f"field {field} of " if field else ""
            return SchemaError(
                f"{ctx.topic} {ctx.field}: {where}{model_name(self.model)} cannot be converted for "
                f"Avro ({type(bad).__name__}: {bad}); check the types of its fields"
            )
        detail = ""
        try:
            validate(datum, self._parsed, raise_errors=True)
        except ValidationError as found:
            detail = _validation_text(found)
        except Exception as found:  # fastavro's own conversions failing inside validation
            exc = found
        if not detail:
            field = self._locate(datum)
            where = f"field {field}: " if field else ""
            detail = f"{where}{type(exc).__name__}: {exc}"
        return SchemaError(
            f"{ctx.topic} {ctx.field}: {model_name(self.model)} does not fit its schema: {detail}; "
            "fix the value before sending"
        )

    def _locate(self, datum: Any) -> str | None:
        """The top-level field fastavro cannot write (validation misses e.g. a decimal's scale)."""
        schema = self.schema
        if not isinstance(schema, dict) or schema.get("type") != "record":
            return None
        if not isinstance(datum, Mapping):
            return None
        named = self._parsed.get("__named_schemas", {})
        for field in schema["fields"]:
            if isinstance(field["type"], str) and field["type"] in named:
                continue  # a reference to a named type: validation already checked it
            try:
                one = fastavro.parse_schema(field["type"], named_schemas=dict(named))
                _writer(BytesIO(), one, datum.get(field["name"]))
            except Exception:
                return str(field["name"])
        return None

    def _load_writer(self, schema_id: int, ctx: SerdeContext) -> _Schemas:
        try:
            writer = self.registry.get_schema(schema_id)
        except SchemaNotFound as exc:
            raise _decode_error(
                f"schema id {schema_id} is unknown to the registry; was the message written "
                "against another registry?",
                ctx,
            ) from exc
        try:
            parsed = parse(writer)
        except SchemaError as exc:
            raise _decode_error(f"the writer schema {schema_id} is invalid: {exc}", ctx) from exc
        reader = None if canonical(writer) == self._canonical else self._reader_for(writer)
        fresh = () if reader is None else _mutable_defaults(self._parsed, writer)
        # Same schema: nothing to resolve, so the generated reader can read it.
        fast = body_reader(parsed) if reader is None else None
        schemas = self._readers[frame(schema_id)] = (parsed, reader, fresh, fast)
        return schemas

    def _reader_for(self, writer: Any) -> Any:
        """The model's schema, told that the writer's top-level record is another name for it.

        Avro matches records by name; a consumer's own copy of a model may be named differently
        (``CustomerCopy`` reading ``shop.Customer``), and an alias is how Avro says that is fine.
        """
        mine: Any = self.schema
        if not (_is_record(mine) and _is_record(writer)) or writer["name"] == mine["name"]:
            return self._parsed
        full = writer["name"]
        if "." not in full and writer.get("namespace"):
            full = f"{writer['namespace']}.{full}"
        return parse({**mine, "aliases": [*mine.get("aliases", []), full]})

    def _bad_frame(self, data: bytes | None, ctx: SerdeContext) -> DecodeError:
        if data is None:
            return _decode_error("no bytes to decode (a tombstone?)", ctx)
        if len(data) and data[0] != MAGIC:
            return _decode_error(
                f"bad magic byte {data[0]} (expected {MAGIC}); the message is not in the "
                "Confluent wire format",
                ctx,
            )
        return _decode_error(
            f"only {len(data)} bytes, fewer than the {HEADER_SIZE}-byte wire-format header; the "
            "message is truncated or not in the Confluent wire format",
            ctx,
        )


def _is_primitive(parsed: Any) -> bool:
    """True for a parsed primitive schema, logical types included (``{"type": "string",
    "logicalType": "uuid"}``): not a record, enum, fixed, union or container."""
    return isinstance(parsed, dict) and parsed.get("type") in {
        "null",
        "boolean",
        "int",
        "long",
        "float",
        "double",
        "bytes",
        "string",
    }


def _id_of(data: bytes) -> int:
    return int.from_bytes(data[1:HEADER_SIZE], "big")


def _mutable_defaults(reader: Any, writer: Any) -> tuple[str, ...]:
    """Top-level reader fields whose decoded value may hold a list or dict default (to copy).

    Fields the writer lacks, and fields whose type has such a default anywhere inside (a nested
    record the writer wrote in an older shape); ``reader`` is fastavro's parsed schema.
    """
    if not (_is_record(reader) and _is_record(writer)):
        return ()
    written = {f["name"] for f in writer["fields"]}
    named = reader.get("__named_schemas", {})
    return tuple(
        f["name"]
        for f in reader["fields"]
        if (f["name"] not in written and isinstance(f.get("default"), (list, dict)))
        or _holds_mutable_default(f["type"], named, set())
    )


def _holds_mutable_default(schema: Any, named: dict[str, Any], seen: set[str]) -> bool:
    if isinstance(schema, str):
        if schema not in named or schema in seen:
            return False
        seen.add(schema)
        return _holds_mutable_default(named[schema], named, seen)
    if isinstance(schema, list):
        return any(_holds_mutable_default(s, named, seen) for s in schema)
    if not isinstance(schema, dict):
        return False
    kind = schema.get("type")
    if kind == "record":
        seen.add(schema["name"])
        return any(
            isinstance(f.get("default"), (list, dict))
            or _holds_mutable_default(f["type"], named, seen)
            for f in schema["fields"]
        )
    if kind == "array":
        return _holds_mutable_default(schema["items"], named, seen)
    if kind == "map":
        return _holds_mutable_default(schema["values"], named, seen)
    return False


def _is_record(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "record" and "name" in schema


def _decode_error(message: str, ctx: SerdeContext) -> DecodeError:
    return DecodeError(
        f"cannot decode the {ctx.field} of a message: {message}",
        topic=ctx.topic,
        partition=ctx.partition,
        offset=ctx.offset,
    )


def _validation_text(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if errors:
        parts = []
        for e in errors:
            field = getattr(e, "field", None) or "value"
            schema = getattr(e, "schema", None)
            expected = schema if isinstance(schema, str) else json.dumps(schema, default=str)
            datum = getattr(e, "datum", None)
            parts.append(
                f"field {field} is {datum!r} ({type(datum).__name__}), expected {expected}"
            )
        return "; ".join(parts)
    return f"{type(exc).__name__}: {exc}"
