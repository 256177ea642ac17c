"""The schema registry seam: subjects, versions, ids and compatibility rules.

Subjects follow Confluent's TopicNameStrategy (``<topic>-key`` / ``<topic>-value``); each subject
holds numbered versions of schemas; every distinct schema gets one id, shared by all subjects that
register it. ``open_registry(url)`` picks the backend:

- ``embedded`` (default, or ``$FERRYMAN_REGISTRY``): SQLite beside the embedded broker's file;
  ``embedded:PATH`` names the file;
- ``http(s)://host:8081``: any Confluent-compatible registry (or ``ferryman registry serve``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Protocol

from ferryman.errors import ConfigError

AvroSchema = dict[str, Any] | list[Any] | str
Version = int | Literal["latest"]

DEFAULT_REGISTRY_FILE = "registry.db"
DEFAULT_REGISTRY_PATH = ".ferryman/registry.db"


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


@dataclass(frozen=True, slots=True)
class RegisteredSchema:
    """One version of a subject: its number, the schema's id and the schema (parsed JSON)."""

    subject: str
    version: int
    schema_id: int
    schema: AvroSchema


class Registry(Protocol):
    """Where schemas are registered and found by id. SchemaNotFound for unknown subjects/ids."""

    def register(self, subject: str, schema: AvroSchema) -> int:
        """Register ``schema`` under ``subject`` and return its id; idempotent for an equal schema.

        Raises IncompatibleSchema when the subject's compatibility rule refuses it.
        """
        ...

    def lookup(self, subject: str, schema: AvroSchema) -> RegisteredSchema:
        """The version of ``subject`` holding ``schema``."""
        ...

    def get_schema(self, schema_id: int) -> AvroSchema:
        """The schema with id ``schema_id``."""
        ...

    def get_version(self, subject: str, version: Version) -> RegisteredSchema:
        """Version ``version`` (a number or ``"latest"``) of ``subject``."""
        ...

    def latest(self, subject: str) -> RegisteredSchema:
        """The latest version of ``subject``."""
        ...

    def versions(self, subject: str) -> list[int]:
        """The version numbers of ``subject``, oldest first."""
        ...

    def subjects(self) -> list[str]:
        """Every subject with at least one version."""
        ...

    def delete_subject(self, subject: str) -> list[int]:
        """Delete ``subject`` and return the versions it had (schema ids stay valid)."""
        ...

    def get_compatibility(self, subject: str | None = None) -> str:
        """The level in force for ``subject`` (its own, else the global one), or the global one."""
        ...

    def set_compatibility(self, level: str, subject: str | None = None) -> None:
        """Set the level of ``subject``, or the global default when ``subject`` is None."""
        ...

    def test_compatibility(
        self, subject: str, schema: AvroSchema, version: Version = "latest"
    ) -> list[str]:
        """The problems ``schema`` would have against ``version`` of ``subject``; empty if none."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


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


def parse_schema_text(text: str | AvroSchema) -> AvroSchema:
    """A schema given as JSON text (as registries exchange it) or already parsed."""
    if not isinstance(text, str):
        return text
    try:
        parsed: AvroSchema = json.loads(text)
    except json.JSONDecodeError:
        return text  # a bare primitive name such as long
    return parsed


def check(new: AvroSchema, existing: list[AvroSchema], level: str) -> list[str]:
    """Problems of ``new`` against a subject's ``existing`` versions (oldest first) under ``level``."""
    # Imported here: the rules live in their own module, loaded only when a check is needed.
    from ferryman.schema.compat import check_compatibility

    problems: list[str] = check_compatibility(new, existing, level)
    return problems


def default_embedded_path() -> Path:
    """``registry.db`` beside the embedded broker's file (``$FERRYMAN_BROKER``), else .ferryman/."""
    broker = os.environ.get("FERRYMAN_BROKER", "")
    if broker.startswith("embedded:") and broker[len("embedded:") :]:
        return Path(broker[len("embedded:") :]).parent / DEFAULT_REGISTRY_FILE
    return Path(DEFAULT_REGISTRY_PATH)


def open_registry(url: str | None = None, *, config: dict[str, Any] | None = None) -> Registry:
    """Open the registry at ``url`` (default ``$FERRYMAN_REGISTRY``, else ``embedded``).

    ``config`` adds SchemaRegistryClient settings (``basic.auth.user.info``, TLS) for HTTP.
    """
    url = url or os.environ.get("FERRYMAN_REGISTRY") or "embedded"
    if url == "embedded" or url.startswith("embedded:"):
        from ferryman.schema.embedded import EmbeddedRegistry

        path = url[len("embedded:") :] if url.startswith("embedded:") else ""
        return EmbeddedRegistry(path or default_embedded_path())
    if url.startswith(("http://", "https://")):
        from ferryman.schema.http import HttpRegistry

        return HttpRegistry(url, config)
    raise ConfigError(
        f"unknown registry URL {url!r}: use embedded, embedded:PATH or the http(s):// URL of a "
        "Confluent-compatible schema registry"
    )
