"""Tables for mirrors: made from a topic's model (through its Avro schema) or given by the user,
the mapping of a value to a row, and the check of a table against the live database.

Column types from Avro::

    int, long -> BigInteger          float -> Float           double -> Double
    (an integer key on SQLite: INTEGER, the rowid itself, so rows live in one B-tree)
    string -> Text                   boolean -> Boolean       bytes, fixed -> LargeBinary
    enum -> Text (the symbol)        record, array, map, unions of several types -> JSON
    date -> Date   time-* -> Time    timestamp-* -> DateTime(timezone=True)
    local-timestamp-* -> DateTime    decimal -> Numeric(precision, scale)   uuid -> Uuid
    ["null", X] -> X, nullable       the key field -> the primary key
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import operator
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Double,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    Table,
    Text,
    Time,
    Uuid,
    inspect,
)
from sqlalchemy.types import TypeEngine

from ferryman.errors import ConfigError, MirrorSchemaError, SchemaError
from ferryman.schema.models import avro_schema

Row = dict[str, Any]
Transform = Callable[[Any], Row | None]
"""A user's mapping of a value to a row (column -> value); None deletes the key's row."""

_PRIMITIVE_TYPES: dict[str, Callable[[], TypeEngine[Any]]] = {
    "int": BigInteger,
    "long": BigInteger,
    "float": Float,
    "double": Double,
    "string": Text,
    "boolean": Boolean,
    "bytes": LargeBinary,
}


_KEY_INTEGER = BigInteger().with_variant(Integer(), "sqlite")
"""An integer key column: on SQLite declared INTEGER, which makes a single-column primary key
the table's rowid. A BIGINT key is a second B-tree beside the rowid's, written on every upsert:
raw sqlite3 upserts of 200,000 rows over 20,000 keys took 20-30% less CPU with INTEGER here.
Both hold 64-bit integers; PostgreSQL keeps BIGINT."""


@dataclass(frozen=True, slots=True)
class FieldColumn:
    """One field of the model as a column: its name in the table and how a value is stored."""

    field: str
    column: str
    type: TypeEngine[Any]
    nullable: bool
    convert: Callable[[Any], Any] | None  # None: stored as it is


def field_columns(
    model: Any,
    *,
    rename: Mapping[str, str] | None = None,
    exclude: Collection[str] = (),
) -> list[FieldColumn]:
    """The columns of ``model`` (a dataclass, pydantic model or Avro schema source), in field
    order, renamed by ``rename`` (field -> column) and without the ``exclude``d fields."""
    schema = avro_schema(model)
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise SchemaError(
            f"a mirror needs a record model, but {model!r} has the Avro schema {schema!r}; "
            "declare the topic's model as a dataclass, a pydantic model or a record .avsc"
        )
    rename = dict(rename or {})
    names = [f["name"] for f in schema["fields"]]
    unknown = sorted((set(rename) | set(exclude)) - set(names))
    if unknown:
        raise ConfigError(
            f"rename/exclude name {', '.join(unknown)}, which {schema['name']} lacks (its fields: "
            f"{', '.join(names)}); name fields of the topic's model"
        )
    named: dict[str, Any] = {}
    _collect_named(schema, schema.get("namespace"), named)
    out = []
    for f in schema["fields"]:
        if f["name"] in exclude:
            continue
        sql_type, nullable, convert = _column_type(f["type"], named)
        out.append(
            FieldColumn(f["name"], rename.get(f["name"], f["name"]), sql_type, nullable, convert)
        )
    columns = [c.column for c in out]
    doubled = sorted({c for c in columns if columns.count(c) > 1})
    if doubled:
        raise ConfigError(
            f"rename maps two fields to column(s) {', '.join(doubled)}; give each its own"
        )
    return out


def table_from_model(
    name: str,
    metadata: MetaData,
    model: Any,
    key: str,
    *,
    rename: Mapping[str, str] | None = None,
    exclude: Collection[str] = (),
) -> Table:
    """A table named ``name`` on ``metadata`` with a column per field of ``model`` and the key
    field's column as the primary key."""
    if key in exclude:
        raise ConfigError(
            f"table {name!r}: the key field {key!r} cannot be excluded; it is the primary key"
        )
    columns = []
    for fc in field_columns(model, rename=rename, exclude=exclude):
        is_key = fc.field == key
        sql_type = _KEY_INTEGER if is_key and type(fc.type) is BigInteger else fc.type
        column = Column(
            fc.column, sql_type, primary_key=is_key, nullable=fc.nullable and not is_key
        )
        if is_key:
            column.autoincrement = False  # keys come from the topic, never from a sequence
        columns.append(column)
    if not any(c.primary_key for c in columns):
        raise ConfigError(
            f"table {name!r}: the key field {key!r} is not a field of {model!r}; name one"
        )
    if name in metadata.tables:
        raise ConfigError(
            f"a table named {name!r} is declared twice on the service's MetaData; give the second "
            "mirror another table name"
        )
    return Table(name, metadata, *columns)


def table_of(into: Any) -> Table:
    """The Table of ``into``: a Table, or an ORM mapped class (its ``__table__``)."""
    if isinstance(into, Table):
        return into
    table = getattr(into, "__table__", None)
    if isinstance(table, Table):
        return table
    raise ConfigError(
        f"into={into!r} is neither a SQLAlchemy Table nor a mapped ORM class; pass one of them, "
        "or leave into out to get a table made from the topic's model"
    )


class RowMapper:
    """Turns a value (a model instance or a dict) into a row: the fields of ``columns``, renamed,
    converted to what the column stores; as a dict (call it) or as a tuple in the order of
    ``names`` (``values``, what a mirror writes)."""

    def __init__(self, columns: list[FieldColumn]) -> None:
        self.columns = columns
        self.names = tuple(fc.column for fc in columns)
        self._fields = tuple(fc.field for fc in columns)
        self._converted = tuple(
            (i, fc.convert) for i, fc in enumerate(columns) if fc.convert is not None
        )
        # How to read the fields of a value, per type: itemgetter for a mapping, attrgetter for
        # a model, both C loops that build the tuple (an isinstance(value, Mapping) per row is
        # an ABC check of a microsecond; the mapper runs per row mirrored).
        self._getters: dict[type, Callable[[Any], tuple[Any, ...]]] = {}

    def __call__(self, value: Any) -> Row:
        return dict(zip(self.names, self.values(value), strict=True))

    def values(self, value: Any) -> tuple[Any, ...]:
        """The row of ``value`` as a tuple of the columns' values, in the order of ``names``."""
        got = self._getter_of(type(value))(value)
        if not self._converted:
            return got
        out = list(got)
        for i, convert in self._converted:
            v = out[i]
            if v is not None:
                out[i] = convert(v)
        return tuple(out)

    def rows(self, values: list[Any]) -> list[tuple[Any, ...] | None]:
        """``values`` as rows (``values`` of each; None stays None, a tombstone): for values of
        one type and no converters, the getter maps them in a C loop."""
        kinds = set(map(type, values))
        tombstones = type(None) in kinds
        kinds.discard(type(None))
        if len(kinds) != 1 or self._converted:
            return [None if v is None else self.values(v) for v in values]
        (kind,) = kinds
        get = self._getter_of(kind)
        if not tombstones:
            return list(map(get, values))
        return [None if v is None else get(v) for v in values]

    def _getter_of(self, kind: type) -> Callable[[Any], tuple[Any, ...]]:
        get = self._getters.get(kind)
        if get is None:
            get = self._getters[kind] = self._getter(kind)
        return get

    def _getter(self, kind: type) -> Callable[[Any], tuple[Any, ...]]:
        fields = self._fields
        get: Callable[[Any], Any] = (
            operator.itemgetter(*fields)
            if issubclass(kind, Mapping)
            else operator.attrgetter(*fields)
        )
        if len(fields) == 1:  # a one-field getter returns the value, not a tuple
            one = get
            return lambda value: (one(value),)
        return get


def check_table(conn: Connection, table: Table) -> None:
    """Raise MirrorSchemaError when the live database lacks ``table`` or some of its columns."""
    inspector = inspect(conn)
    schema = table.schema
    if not inspector.has_table(table.name, schema=schema):
        raise MirrorSchemaError(
            f"table {table.name!r} does not exist in the database; create it with a migration "
            f"(`alembic revision --autogenerate -m 'add {table.name}'`, then `alembic upgrade "
            "head`) or let the service create missing tables",
            table=table.name,
            missing=tuple(c.name for c in table.columns),
        )
    live = {c["name"] for c in inspector.get_columns(table.name, schema=schema)}
    missing = tuple(c.name for c in table.columns if c.name not in live)
    if missing:
        raise MirrorSchemaError(
            f"table {table.name!r} lacks the column(s) {', '.join(missing)} that its topic's model "
            f"needs; generate and run a migration: `alembic revision --autogenerate -m 'add "
            f"{', '.join(missing)} to {table.name}'`, then `alembic upgrade head` (or exclude "
            "those fields from the mirror)",
            table=table.name,
            missing=missing,
        )


# --- Avro -> SQL types --------------------------------------------------------------------------


def _collect_named(schema: Any, namespace: str | None, named: dict[str, Any]) -> None:
    """Index the named types (records, enums, fixed) of ``schema`` by name and full name."""
    if isinstance(schema, list):
        for branch in schema:
            _collect_named(branch, namespace, named)
        return
    if not isinstance(schema, dict):
        return
    kind = schema.get("type")
    if kind in ("record", "error", "enum", "fixed"):
        ns = schema.get("namespace", namespace)
        name = schema["name"]
        full = name if "." in name or not ns else f"{ns}.{name}"
        named[full] = schema
        named.setdefault(name, schema)
        namespace = ns
    for f in schema.get("fields", ()):
        _collect_named(f["type"], namespace, named)
    for part in ("items", "values"):
        if part in schema:
            _collect_named(schema[part], namespace, named)


def _column_type(
    avro: Any, named: dict[str, Any]
) -> tuple[TypeEngine[Any], bool, Callable[[Any], Any] | None]:
    """(SQL type, nullable, converter) of a field of Avro type ``avro``."""
    if isinstance(avro, list):
        rest = [b for b in avro if b != "null"]
        nullable = len(rest) < len(avro)
        if len(rest) == 1:
            sql_type, _, convert = _column_type(rest[0], named)
            return sql_type, nullable, convert
        return JSON(), nullable, jsonable
    if isinstance(avro, str) and avro not in _PRIMITIVE_TYPES:
        if avro == "null":
            return JSON(), True, None
        if avro not in named:
            raise SchemaError(f"the Avro type {avro!r} is not defined in the schema; define it")
        avro = named[avro]
    if isinstance(avro, dict):
        logical = avro.get("logicalType")
        kind = avro.get("type")
        if isinstance(kind, (dict, list)):
            return _column_type(kind, named)
        if logical == "decimal":
            return Numeric(avro.get("precision", 38), avro.get("scale", 0)), False, None
        if logical == "date":
            return Date(), False, None
        if logical in ("time-millis", "time-micros"):
            return Time(), False, None
        if logical in ("timestamp-millis", "timestamp-micros", "timestamp-nanos"):
            return DateTime(timezone=True), False, None
        if logical in ("local-timestamp-millis", "local-timestamp-micros"):
            return DateTime(timezone=False), False, None
        if logical == "uuid":
            return Uuid(), False, _as_uuid
        if kind == "enum":
            return Text(), False, _enum_symbol
        if kind == "fixed":
            return LargeBinary(), False, None
        if kind in ("record", "error", "array", "map"):
            return JSON(), False, jsonable
        avro = kind
    if isinstance(avro, str) and avro in _PRIMITIVE_TYPES:
        return _PRIMITIVE_TYPES[avro](), False, None
    raise SchemaError(
        f"the Avro type {avro!r} has no column mapping; exclude the field or transform it"
    )


def _as_uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _enum_symbol(value: Any) -> str:
    return value.name if isinstance(value, enum.Enum) else str(value)


def jsonable(value: Any) -> Any:
    """``value`` (nested models, lists, dicts, logical types) as plain JSON data."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    dump = getattr(value, "model_dump", None)
    if callable(dump):  # pydantic
        return jsonable(dump())
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"{type(value).__name__} value {value!r} cannot be stored as JSON")
