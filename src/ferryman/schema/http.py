"""A Confluent-compatible schema registry over HTTP, through confluent-kafka's client."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from ferryman.errors import (
    ConfigError,
    FerrymanError,
    IncompatibleSchema,
    RegistryError,
    SchemaError,
    SchemaNotFound,
)
from ferryman.schema.compat import Compatibility
from ferryman.schema.parsing import AvroSchema, parse_schema_text
from ferryman.schema.registry import RegisteredSchema, Version

T = TypeVar("T")

_NOT_FOUND = {40401, 40402, 40403}
_NO_SUBJECT_CONFIG = 40408


class HttpRegistry:
    """A registry at ``url`` (Confluent Schema Registry, Karapace, ``ferryman registry serve``).

    ``config`` holds SchemaRegistryClient settings such as ``basic.auth.user.info`` or
    ``ssl.ca.location``.
    """

    def __init__(self, url: str, config: dict[str, Any] | None = None) -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        self.url = url
        try:
            self._client = SchemaRegistryClient({**(config or {}), "url": url})
        except Exception as exc:
            raise ConfigError(
                f"cannot set up the schema registry client for {url!r} ({exc}); check the URL "
                "and the client settings"
            ) from exc

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except FerrymanError:
            raise
        except Exception as exc:
            raise self._error(what, exc) from exc

    def _error(self, what: str, exc: Exception) -> FerrymanError:
        """ferryman's error for what the client raised while doing ``what``."""
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        if not isinstance(exc, SchemaRegistryError):
            return RegistryError(
                f"{what}: cannot reach the schema registry at {self.url} ({type(exc).__name__}: "
                f"{exc}); check that it runs and the URL is right"
            )
        if exc.error_code in _NOT_FOUND:
            return SchemaNotFound(
                f"{what}: the registry at {self.url} has no such subject, version or schema id "
                f"({exc.error_message}); check the name, or register the schema first"
            )
        if exc.http_status_code == 409:
            return IncompatibleSchema(
                f"{what}: the registry at {self.url} refused the schema as incompatible "
                f"({exc.error_message}); make the change compatible or change the subject's "
                "compatibility on purpose"
            )
        if exc.http_status_code == 422:
            return SchemaError(f"{what}: {exc.error_message}; fix the schema")
        return RegistryError(
            f"{what}: the registry at {self.url} answered {exc}; check the registry"
        )

    def register(self, subject: str, schema: AvroSchema) -> int:
        """Register ``schema`` under ``subject`` and return its id."""
        sch = _schema(schema)
        schema_id: int = self._call(
            f"registering a schema under {subject!r}",
            lambda: self._client.register_schema(subject, sch),
        )
        return schema_id

    def lookup(self, subject: str, schema: AvroSchema) -> RegisteredSchema:
        """The version of ``subject`` holding ``schema``."""
        sch = _schema(schema)
        found = self._call(
            f"looking up a schema in {subject!r}", lambda: self._client.lookup_schema(subject, sch)
        )
        return _registered(subject, found, schema)

    def get_schema(self, schema_id: int) -> AvroSchema:
        """The schema with id ``schema_id``."""
        found = self._call(
            f"fetching schema id {schema_id}", lambda: self._client.get_schema(schema_id)
        )
        return parse_schema_text(str(found.schema_str))

    def get_version(self, subject: str, version: Version) -> RegisteredSchema:
        """Version ``version`` (a number or ``"latest"``) of ``subject``."""
        if version == "latest":
            return self.latest(subject)
        found = self._call(
            f"fetching version {version} of {subject!r}",
            lambda: self._client.get_version(subject, version),
        )
        return _registered(subject, found)

    def latest(self, subject: str) -> RegisteredSchema:
        """The latest version of ``subject``."""
        found = self._call(
            f"fetching the latest version of {subject!r}",
            lambda: self._client.get_latest_version(subject),
        )
        return _registered(subject, found)

    def versions(self, subject: str) -> list[int]:
        """The version numbers of ``subject``, oldest first."""
        found: list[int] = self._call(
            f"listing the versions of {subject!r}", lambda: self._client.get_versions(subject)
        )
        return sorted(found)

    def subjects(self) -> list[str]:
        """Every subject."""
        found: list[str] = self._call("listing subjects", self._client.get_subjects)
        return sorted(found)

    def delete_subject(self, subject: str) -> list[int]:
        """Delete ``subject``; returns the versions it had."""
        found: list[int] = self._call(
            f"deleting {subject!r}", lambda: self._client.delete_subject(subject)
        )
        return sorted(found)

    def get_compatibility(self, subject: str | None = None) -> str:
        """The level in force for ``subject`` (its own, else the global one)."""
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        if subject is not None:
            try:
                level: str = self._client.get_compatibility(subject)
                return level
            except SchemaRegistryError as exc:
                if exc.error_code != _NO_SUBJECT_CONFIG:
                    raise self._error(f"reading the compatibility of {subject!r}", exc) from exc
            except Exception as exc:
                raise self._error(f"reading the compatibility of {subject!r}", exc) from exc
        level = self._call("reading the global compatibility", self._client.get_compatibility)
        return level

    def set_compatibility(self, level: str, subject: str | None = None) -> None:
        """Set ``subject``'s level, or the global default when ``subject`` is None."""
        value = Compatibility.of(level).value
        self._call(
            f"setting the compatibility of {subject or 'the registry'}",
            lambda: self._client.set_compatibility(subject_name=subject, level=value),
        )

    def test_compatibility(
        self, subject: str, schema: AvroSchema, version: Version = "latest"
    ) -> list[str]:
        """The problems the registry reports for ``schema`` against ``version`` of ``subject``."""
        sch = _schema(schema)
        ok: bool = self._call(
            f"testing compatibility with {subject!r}",
            lambda: self._client.test_compatibility(subject, sch, version),
        )
        if ok:
            return []
        return [
            f"the registry at {self.url} finds the schema incompatible with version {version} of "
            f"{subject!r} under its rule {self.get_compatibility(subject)}"
        ]

    def close(self) -> None:
        """Close the client's HTTP connections."""
        self._client.close()

    def __enter__(self) -> HttpRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _schema(schema: AvroSchema) -> Any:
    from confluent_kafka.schema_registry import Schema

    text = schema if isinstance(schema, str) and schema.strip()[:1] in '{["' else json.dumps(schema)
    return Schema(text, "AVRO")


def _registered(subject: str, found: Any, schema: AvroSchema | None = None) -> RegisteredSchema:
    text = getattr(found.schema, "schema_str", None)
    parsed = parse_schema_text(text) if text else schema
    return RegisteredSchema(
        found.subject or subject, int(found.version), int(found.schema_id), parsed or ""
    )
