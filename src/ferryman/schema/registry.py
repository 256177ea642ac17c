"""The schema registry seam: subjects, versions, ids and compatibility rules.

Subjects follow Confluent's TopicNameStrategy (``<topic>-key`` / ``<topic>-value``); each subject
holds numbered versions of schemas; every distinct schema gets one id, shared by all subjects that
register it. The backends are ``embedded.py`` and ``http.py``; ``open.py`` picks one by URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from ferryman.schema.parsing import AvroSchema

Version = int | Literal["latest"]


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
