"""Schema compatibility by Avro's resolution rules, as Confluent's Schema Registry checks it.

``can_read(reader, writer)`` is Avro's "Schema Resolution" (the rules of Java's
``SchemaCompatibility``, which Confluent's registry uses); ``check_compatibility`` applies it per
level: BACKWARD (the new schema reads data written with the old), FORWARD (the old reads the new),
FULL (both), their transitive forms (against every existing schema, not just the latest) and NONE.
Problems name the path of the field, e.g. ``Customer.address.zip`` (``lines[]`` is an array's
items, ``attrs{}`` a map's values).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeAlias

from ferryman.errors import ConfigError, SchemaError
from ferryman.schema.parsing import AvroSchema, parse_schema_text


class Compatibility(StrEnum):
    """The rule a new schema must keep towards the subject's earlier versions (Confluent's names)."""

    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"
    NONE = "NONE"

    @classmethod
    def of(cls, level: str) -> Compatibility:
        """``level`` (any case) as a Compatibility; ConfigError naming the valid levels if not one."""
        try:
            return cls(level.upper())
        except (ValueError, AttributeError):
            names = ", ".join(c.value for c in cls)
            raise ConfigError(
                f"unknown compatibility level {level!r}; use one of {names}"
            ) from None


DEFAULT_COMPATIBILITY = Compatibility.BACKWARD
"""The registry-wide default, as in Confluent's registry; ferryman's topics set their own level."""

SchemaJSON: TypeAlias = AvroSchema
"""A parsed Avro schema: a dict, a list (a union) or a str (a primitive or a named type).

JSON schema text (a str starting with ``{``, ``[`` or ``"``) is accepted too.
"""

LEVELS = tuple(level.value for level in Compatibility)

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
# reader type -> writer types it can read (Avro spec, "Schema Resolution").
_PROMOTIONS = {
    "long": {"int"},
    "float": {"int", "long"},
    "double": {"int", "long", "float"},
    "string": {"bytes"},
    "bytes": {"string"},
}
# Placeholders in problem texts, replaced by "the new schema", "the reader schema", ...
_R, _W = "\x00reader\x00", "\x00writer\x00"


# --- a schema resolved into a graph of nodes (named references become shared nodes) ---


@dataclass(eq=False)
class _Primitive:
    type: str


@dataclass(eq=False)
class _Array:
    items: _Node


@dataclass(eq=False)
class _Map:
    values: _Node


@dataclass(eq=False)
class _Union:
    branches: list[_Node]


@dataclass(eq=False)
class _Field:
    name: str
    aliases: tuple[str, ...]
    type: _Node
    has_default: bool


@dataclass(eq=False)
class _Named:
    kind: str  # record, enum or fixed
    fullname: str
    aliases: frozenset[str]  # full names
    fields: list[_Field] = field(default_factory=list)
    symbols: list[str] = field(default_factory=list)
    enum_default: str | None = None
    size: int = 0

    @property
    def name(self) -> str:
        return self.fullname.rpartition(".")[2]


_Node: TypeAlias = _Primitive | _Array | _Map | _Union | _Named


def _full_name(name: str, namespace: str | None) -> str:
    if "." in name or not namespace:
        return name
    return f"{namespace}.{name}"


class _Parser:
    """Resolves one schema document; named types are registered before their body so recursion works."""

    def __init__(self) -> None:
        self.names: dict[str, _Named] = {}

    def parse(self, schema: Any, namespace: str | None) -> _Node:
        if isinstance(schema, str):
            return self._reference(schema, namespace)
        if isinstance(schema, list):
            return _Union([self.parse(branch, namespace) for branch in schema])
        if not isinstance(schema, dict):
            raise _invalid(f"{schema!r} is not a schema")
        kind = schema.get("type")
        if kind in ("record", "error", "enum", "fixed"):
            return self._named(schema, "record" if kind == "error" else kind, namespace)
        if kind == "array":
            return _Array(self.parse(_require(schema, "items"), namespace))
        if kind == "map":
            return _Map(self.parse(_require(schema, "values"), namespace))
        if isinstance(kind, str | list | dict):
            # {"type": "int", "logicalType": ...}: logical types are read as their underlying
            # type, as Java's SchemaCompatibility (and so Confluent) does.
            return self.parse(kind, namespace)
        raise _invalid(f"{schema!r} has no valid 'type'")

    def _reference(self, name: str, namespace: str | None) -> _Node:
        if name in _PRIMITIVES:
            return _Primitive(name)
        found = self.names.get(_full_name(name, namespace)) or self.names.get(name)
        if found is None:
            raise SchemaError(
                f"the schema refers to the unknown type {name!r}: define that named type "
                "before referring to it, or correct the name"
            )
        return found

    def _named(self, schema: dict[str, Any], kind: str, enclosing: str | None) -> _Named:
        name = _require(schema, "name")
        if not isinstance(name, str) or not name:
            raise _invalid(f"the {kind} name {name!r} is not a string")
        namespace = name.rpartition(".")[0] if "." in name else schema.get("namespace", enclosing)
        fullname = _full_name(name, namespace)
        aliases = frozenset(_full_name(alias, namespace) for alias in schema.get("aliases", ()))
        node = _Named(kind, fullname, aliases)
        self.names[fullname] = node
        if kind == "record":
            for spec in _require(schema, "fields"):
                node.fields.append(
                    _Field(
                        name=_require(spec, "name"),
                        aliases=tuple(spec.get("aliases", ())),
                        type=self.parse(_require(spec, "type"), namespace),
                        has_default="default" in spec,
                    )
                )
        elif kind == "enum":
            node.symbols = list(_require(schema, "symbols"))
            node.enum_default = schema.get("default")
        else:
            node.size = int(_require(schema, "size"))
        return node


def _require(schema: Any, key: str) -> Any:
    if not isinstance(schema, dict) or key not in schema:
        raise _invalid(f"{schema!r} lacks {key!r}")
    return schema[key]


def _invalid(what: str) -> SchemaError:
    return SchemaError(f"invalid Avro schema: {what}; fix the schema (see the Avro specification)")


def _parse(schema: SchemaJSON) -> _Node:
    # Schema text too, as the registry's REST API carries it.
    return _Parser().parse(parse_schema_text(schema), None)


# --- the reader/writer check ---


@dataclass(frozen=True, slots=True)
class _Problem:
    path: tuple[str, ...]  # segments below the checked node: ".field", "[]", "{}"
    text: str  # with the _R / _W placeholders

    def under(self, segment: str) -> _Problem:
        return _Problem((segment, *self.path), self.text)


def _describe(node: _Node) -> str:
    if isinstance(node, _Primitive):
        return f"'{node.type}'"
    if isinstance(node, _Named):
        return f"{node.kind} '{node.name}'"
    if isinstance(node, _Array):
        return f"an array of {_describe(node.items)}"
    if isinstance(node, _Map):
        return f"a map of {_describe(node.values)}"
    return "union [" + ", ".join(_short(branch) for branch in node.branches) + "]"


def _short(node: _Node) -> str:
    if isinstance(node, _Primitive):
        return node.type
    if isinstance(node, _Named):
        return node.name
    return "array" if isinstance(node, _Array) else "map" if isinstance(node, _Map) else "union"


def _kind(node: _Node) -> str:
    return node.type if isinstance(node, _Primitive) else type(node).__name__


class _Checker:
    """Can data written with ``writer`` be read with ``reader``? Memoized per node pair."""

    def __init__(self) -> None:
        # None marks a pair being checked: meeting it again (a recursive type) assumes it readable,
        # since any problem it has is reported where the recursion started.
        self._memo: dict[tuple[int, int], list[_Problem] | None] = {}

    def check(self, reader: _Node, writer: _Node) -> list[_Problem]:
        key = (id(reader), id(writer))
        if key in self._memo:
            return self._memo[key] or []
        self._memo[key] = None
        problems = self._compute(reader, writer)
        self._memo[key] = problems
        return problems

    def _compute(self, reader: _Node, writer: _Node) -> list[_Problem]:
        if isinstance(writer, _Union):
            # Every branch the writer may use must be readable.
            return [p for branch in writer.branches for p in self.check(reader, branch)]
        if isinstance(reader, _Union):
            return self._into_union(reader, writer)
        if isinstance(reader, _Primitive) and isinstance(writer, _Primitive):
            if reader.type == writer.type or writer.type in _PROMOTIONS.get(reader.type, ()):
                return []
        elif isinstance(reader, _Array) and isinstance(writer, _Array):
            return [p.under("[]") for p in self.check(reader.items, writer.items)]
        elif isinstance(reader, _Map) and isinstance(writer, _Map):
            return [p.under("{}") for p in self.check(reader.values, writer.values)]
        elif (
            isinstance(reader, _Named) and isinstance(writer, _Named) and reader.kind == writer.kind
        ):
            return self._named(reader, writer)
        return [
            _Problem(
                (),
                f"{_W} has {_describe(writer)} where {_R} has {_describe(reader)}, "
                f"and {_describe(writer)} cannot be read as {_describe(reader)}",
            )
        ]

    def _into_union(self, reader: _Union, writer: _Node) -> list[_Problem]:
        if any(not self.check(branch, writer) for branch in reader.branches):
            return []
        # One branch of the same kind (an optional record, say): its problems say more.
        same = [b for b in reader.branches if _kind(b) == _kind(writer)]
        if len(same) == 1:
            return list(self.check(same[0], writer))
        return [
            _Problem(
                (),
                f"{_W} can write {_describe(writer)}, which no branch of {_R}'s "
                f"{_describe(reader)} can read",
            )
        ]

    def _named(self, reader: _Named, writer: _Named) -> list[_Problem]:
        problems = []
        # Java's SchemaCompatibility matches unqualified names, or a reader alias (a full name).
        if reader.name != writer.name and writer.fullname not in reader.aliases:
            problems.append(
                _Problem(
                    (),
                    f"{reader.kind} '{writer.fullname}' in {_W} is named '{reader.fullname}' in "
                    f"{_R}, which has no alias '{writer.fullname}'",
                )
            )
        if reader.kind == "record":
            problems += self._fields(reader, writer)
        elif reader.kind == "enum":
            missing = [s for s in writer.symbols if s not in reader.symbols]
            if missing and reader.enum_default not in reader.symbols:
                listed = ", ".join(f"'{s}'" for s in missing)
                problems.append(
                    _Problem(
                        (),
                        f"enum '{reader.name}' has symbol(s) {listed} in {_W} that {_R} lacks, "
                        f"and the enum in {_R} has no default symbol",
                    )
                )
        elif reader.size != writer.size:
            problems.append(
                _Problem(
                    (),
                    f"fixed '{reader.name}' is {writer.size} bytes in {_W} but "
                    f"{reader.size} bytes in {_R}",
                )
            )
        return problems

    def _fields(self, reader: _Named, writer: _Named) -> list[_Problem]:
        problems = []
        by_name = {f.name: f for f in writer.fields}
        for rf in reader.fields:
            segment = "." + rf.name
            matches = [by_name[n] for n in (rf.name, *rf.aliases) if n in by_name]
            if len(matches) > 1:
                names = ", ".join(f"'{m.name}'" for m in matches)
                problems.append(
                    _Problem(
                        (segment,),
                        f"field '{rf.name}' in {_R} matches several fields of {_W} ({names}) "
                        "through its name and aliases",
                    )
                )
            elif matches:
                problems += [p.under(segment) for p in self.check(rf.type, matches[0].type)]
            elif not rf.has_default:
                problems.append(
                    _Problem(
                        (segment,),
                        f"field '{rf.name}' has no default in {_R} and {_W} has no such field",
                    )
                )
        return problems


def _root(node: _Node) -> str:
    return node.name if isinstance(node, _Named) else "(root)"


def _render(problems: list[_Problem], root: str, reader: str, writer: str, rule: str) -> list[str]:
    out: list[str] = []
    for p in problems:
        text = p.text.replace(_R, reader).replace(_W, writer)
        line = f"{root}{''.join(p.path)}: {text}{rule}"
        if line not in out:
            out.append(line)
    return out


def can_read(reader: SchemaJSON, writer: SchemaJSON) -> list[str]:
    """Why data written with ``writer`` cannot be read with ``reader``; empty if it always can."""
    r = _parse(reader)
    return _render(
        _Checker().check(r, _parse(writer)), _root(r), "the reader schema", "the writer schema", ""
    )


def renamed_types(new: SchemaJSON, old: SchemaJSON) -> list[tuple[str, str]]:
    """(new full name, old full name) of each named type of ``new`` found where ``old`` has one
    of another name and ``new`` gives no alias for it: a renamed model class, say."""
    found: list[tuple[str, str]] = []
    seen: set[tuple[int, int]] = set()

    def walk(n: _Node, o: _Node) -> None:
        if (id(n), id(o)) in seen:
            return
        seen.add((id(n), id(o)))
        if isinstance(n, _Named) and isinstance(o, _Named) and n.kind == o.kind:
            if n.name != o.name and o.fullname not in n.aliases:
                found.append((n.fullname, o.fullname))
            old_fields = {f.name: f for f in o.fields}
            for f in n.fields:
                match = next((old_fields[a] for a in (f.name, *f.aliases) if a in old_fields), None)
                if match is not None:
                    walk(f.type, match.type)
        elif isinstance(n, _Array) and isinstance(o, _Array):
            walk(n.items, o.items)
        elif isinstance(n, _Map) and isinstance(o, _Map):
            walk(n.values, o.values)
        elif isinstance(n, _Union) and isinstance(o, _Union):
            # An optional type (["null", X]) on both sides: compare the X.
            ns, os_ = (_not_null(u.branches) for u in (n, o))
            if len(ns) == 1 and len(os_) == 1:
                walk(ns[0], os_[0])

    walk(_parse(new), _parse(old))
    return found


def _not_null(branches: list[_Node]) -> list[_Node]:
    return [b for b in branches if not (isinstance(b, _Primitive) and b.type == "null")]


def check_compatibility(
    new_schema: SchemaJSON, existing_schemas: Sequence[SchemaJSON], level: str
) -> list[str]:
    """Problems that stop ``new_schema`` following ``existing_schemas`` (oldest first) at ``level``.

    An empty list means compatible. Non-transitive levels check against the latest schema only;
    transitive ones against each, named in messages "existing schema #i of n" (#1 the oldest).
    """
    normalized = level.strip().upper() if isinstance(level, str) else ""
    if normalized not in LEVELS:
        raise ConfigError(f"unknown compatibility level {level!r}: use one of {', '.join(LEVELS)}")
    if normalized == "NONE" or not existing_schemas:
        return []
    new = _parse(new_schema)
    count = len(existing_schemas)
    if normalized.endswith("_TRANSITIVE"):
        targets = list(enumerate(existing_schemas))
    else:
        targets = [(count - 1, existing_schemas[-1])]
    root = _root(new)
    problems: list[str] = []
    for index, schema in targets:
        old = _parse(schema)
        if len(targets) > 1:
            old_label = f"existing schema #{index + 1} of {count}"
        else:
            old_label = "the latest schema" if count > 1 else "the old schema"
        new_label = "the new schema"
        if not normalized.startswith("FORWARD"):
            rule = f"; a reader with {new_label} cannot read data written with {old_label} ({normalized})"
            problems += _render(_Checker().check(new, old), root, new_label, old_label, rule)
        if not normalized.startswith("BACKWARD"):
            rule = f"; a reader with {old_label} cannot read data written with {new_label} ({normalized})"
            problems += _render(_Checker().check(old, new), root, old_label, new_label, rule)
    return problems
