"""Avro schema documents: the one reader of schema text, fastavro's check, the canonical form.

The bottom floor of ``ferryman.schema``: every other module that meets a schema as text (a
registry's answer, an ``.avsc`` file, a user's JSON string) reads it here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import fastavro

from ferryman.errors import SchemaError

AvroSchema = dict[str, Any] | list[Any] | str
"""A schema as parsed JSON: a dict (record, enum, ...), a list (union) or a primitive name."""


def parse_schema_text(text: str | AvroSchema) -> AvroSchema:
    """A schema given as JSON text (as registries exchange it) or already parsed.

    Text starting with ``{``, ``[`` or ``"`` is JSON; any other string is a type name (``long``).
    """
    if not isinstance(text, str):
        return text
    stripped = text.strip()
    if stripped[:1] not in ("{", "[", '"'):
        return text  # a type name never starts so
    try:
        parsed: AvroSchema = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"the schema text is not JSON ({exc}); fix the schema") from exc
    return parsed


def load_schema(source: str | Path | Mapping[str, Any] | list[Any]) -> AvroSchema:
    """A hand-written schema from an ``.avsc`` path, JSON text or an already parsed dict/list."""
    if isinstance(source, Mapping):
        return dict(source)
    if isinstance(source, list):
        return list(source)
    text = str(source)
    if isinstance(source, str) and text.strip()[:1] in ("{", "[", '"'):
        return parse_schema_text(text)
    try:
        content = Path(text).read_text(encoding="utf-8")
    except OSError as exc:
        raise SchemaError(
            f"cannot read schema file {text!r} ({exc}); pass an .avsc path, JSON text or a dict"
        ) from exc
    try:
        # A file holds JSON, even for a primitive ("long"), so no bare type names here.
        loaded: AvroSchema = json.loads(content)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"schema file {text!r} is not valid JSON ({exc}); fix it") from exc
    return loaded


def parse(schema: Any) -> Any:
    """fastavro's parsed form of ``schema``; SchemaError when it is not valid Avro."""
    try:
        return fastavro.parse_schema(schema)
    except Exception as exc:
        raise SchemaError(f"invalid Avro schema ({exc}); fix the schema") from exc


def canonical(schema: AvroSchema) -> str:
    """A canonical JSON text of ``schema``: equal schemas, however written, give equal text.

    Keys are sorted and whitespace dropped; ``{"type": "long"}`` becomes ``"long"``. Unlike Avro's
    Parsing Canonical Form it keeps defaults, aliases and docs, which compatibility depends on.
    """
    return json.dumps(_normal(schema), sort_keys=True, separators=(",", ":"))


def _normal(node: Any) -> Any:
    if isinstance(node, dict):
        if set(node) == {"type"} and isinstance(node["type"], str):
            return node["type"]
        return {k: _normal(v) for k, v in node.items() if not k.startswith("__fastavro")}
    if isinstance(node, list):
        return [_normal(v) for v in node]
    return node
