"""Avro bodies read by Python code generated per schema, for the schemas most topics carry.

fastavro's ``schemaless_reader`` pays, per call, for a file object, a parse check of the schema
and a ``read()`` call per field; for the small records of entity and event topics that is most
of the decode. A reader generated for one schema reads the bytes in place instead: about a
third less CPU per record, and it returns the same values fastavro does (tested side by side).

Only what the generated code handles is generated: null, boolean, int, long, float, double,
bytes, string, enums, logical types on those (converted by fastavro's own functions), and records
and unions of those. A schema with anything else (arrays, maps, fixed, named references) gets
None, and the caller keeps using fastavro; so does a writer schema that differs from the
reader's (resolution).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from fastavro.read import LOGICAL_READERS

Reader = Callable[[bytes, int], tuple[Any, int]]
"""``read(data, pos)``: the value whose body starts at ``data[pos]``, and where it ends."""

_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


class _Unsupported(Exception):
    """The schema holds something the generated code does not read."""


def body_reader(schema: Any) -> Reader | None:
    """A reader of Avro bodies written with ``schema`` (as fastavro parsed it), or None when
    the schema holds something only fastavro reads."""
    lines: list[str] = []
    env: dict[str, Any] = {
        "_more": _more,
        "_float": struct.Struct("<f").unpack_from,
        "_double": struct.Struct("<d").unpack_from,
        "_Eof": EOFError,
    }
    try:
        result = _Gen(lines, env).value(schema, "    ")
    except _Unsupported:
        return None
    src = "def read(b, i):\n" + "\n".join(lines) + f"\n    return {result}, i\n"
    exec(compile(src, "<ferryman avro reader>", "exec"), env)
    reader: Reader = env["read"]
    return reader


def _more(b: bytes, i: int, n: int) -> tuple[int, int]:
    """The rest of a varint whose first 21 bits are in ``n`` (not zig-zag decoded yet), and the
    position after it."""
    shift = 21
    while True:
        c = b[i]
        i += 1
        n |= (c & 0x7F) << shift
        if c < 0x80:
            return n, i
        shift += 7


class _Gen:
    """Emits the statements that read one value into a fresh local; ``value`` returns the
    expression of the value read (a local, or a constant)."""

    def __init__(self, lines: list[str], env: dict[str, Any]) -> None:
        self.lines = lines
        self.env = env
        self.count = 0

    def local(self) -> str:
        self.count += 1
        return f"v{self.count}"

    def value(self, schema: Any, indent: str) -> str:
        if isinstance(schema, str):
            if schema not in _PRIMITIVES:
                raise _Unsupported(schema)  # a named reference
            return self.primitive(schema, indent)
        if isinstance(schema, list):
            return self.union(schema, indent)
        if not isinstance(schema, dict):
            raise _Unsupported(schema)
        kind = schema.get("type")
        if "logicalType" in schema:
            return self.logical(schema, indent)
        if kind in _PRIMITIVES:
            return self.primitive(kind, indent)
        if kind == "record":
            return self.record(schema, indent)
        if kind == "enum":
            return self.enum(schema, indent)
        raise _Unsupported(kind)

    def long(self, target: str, indent: str) -> None:
        """Read a zig-zag varint into ``target``, inline: a call per field costs more than the
        bytes it reads, and most varints are one to three bytes (up to 2**20 after zig-zag)."""
        add = self.lines.append
        add(f"{indent}x = b[i]")
        add(f"{indent}i += 1")
        add(f"{indent}if x >= 0x80:")
        add(f"{indent}    x &= 0x7F")
        add(f"{indent}    c = b[i]")
        add(f"{indent}    i += 1")
        add(f"{indent}    x |= (c & 0x7F) << 7")
        add(f"{indent}    if c >= 0x80:")
        add(f"{indent}        c = b[i]")
        add(f"{indent}        i += 1")
        add(f"{indent}        x |= (c & 0x7F) << 14")
        add(f"{indent}        if c >= 0x80:")
        add(f"{indent}            x, i = _more(b, i, x)")
        add(f"{indent}{target} = (x >> 1) ^ -(x & 1)")

    def primitive(self, kind: str, indent: str) -> str:
        if kind == "null":
            return "None"
        v = self.local()
        add = self.lines.append
        if kind in ("int", "long"):
            self.long(v, indent)
        elif kind == "boolean":
            add(f"{indent}{v} = b[i] != 0")
            add(f"{indent}i += 1")
        elif kind in ("float", "double"):
            add(f"{indent}{v}, = _{kind}(b, i)")
            add(f"{indent}i += {4 if kind == 'float' else 8}")
        else:  # bytes, string: a length, then that many bytes
            self.long("n", indent)
            add(f"{indent}e = i + n")
            add(f"{indent}if n < 0 or e > len(b):")
            add(f"{indent}    raise _Eof(f'a {kind} of {{n}} bytes at {{i}} runs past the end')")
            if kind == "string":
                add(f"{indent}{v} = b[i:e].decode()")
            else:
                add(f"{indent}{v} = b[i:e]")
            add(f"{indent}i = e")
        return v

    def logical(self, schema: dict[str, Any], indent: str) -> str:
        """The underlying primitive, then fastavro's own reader of the logical type (so the
        value is the one fastavro returns); an unknown logical type is its primitive."""
        kind = schema["type"]
        if kind not in _PRIMITIVES:
            raise _Unsupported(schema)  # a decimal in a fixed
        raw = self.primitive(kind, indent)
        convert = LOGICAL_READERS.get(f"{kind}-{schema['logicalType']}")
        if convert is None:
            return raw
        v = self.local()
        self.env[f"_l{v}"] = convert
        self.env[f"_w{v}"] = schema
        self.lines.append(f"{indent}{v} = _l{v}({raw}, _w{v}, None)")
        return v

    def record(self, schema: dict[str, Any], indent: str) -> str:
        items = []
        for field in schema["fields"]:
            items.append(f"{field['name']!r}: {self.value(field['type'], indent)}")
        v = self.local()
        self.lines.append(f"{indent}{v} = {{{', '.join(items)}}}")
        return v

    def enum(self, schema: dict[str, Any], indent: str) -> str:
        v = self.local()
        symbols = f"_s{self.count}"
        self.env[symbols] = tuple(schema["symbols"])
        self.long("x", indent)
        self.lines.append(f"{indent}{v} = {symbols}[x]")
        return v

    def union(self, branches: list[Any], indent: str) -> str:
        v = self.local()
        add = self.lines.append
        self.long("x", indent)
        for index, branch in enumerate(branches):
            add(f"{indent}{'if' if index == 0 else 'elif'} x == {index}:")
            add(f"{indent}    {v} = {self.value(branch, indent + '    ')}")
        add(f"{indent}else:")
        add(f"{indent}    raise ValueError(f'union branch {{x}} of {len(branches)}')")
        return v
