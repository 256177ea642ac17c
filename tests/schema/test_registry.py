"""Registry semantics, written once and run against the embedded registry and over HTTP.

The HTTP runs go through confluent-kafka's SchemaRegistryClient to `ferryman registry serve`.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from ferryman.errors import (
    ConfigError,
    IncompatibleSchema,
    RegistryError,
    SchemaError,
    SchemaNotFound,
)
from ferryman.schema import (
    EmbeddedRegistry,
    HttpRegistry,
    Registry,
    avro_schema,
    canonical,
    open_registry,
)

from .schema_models import Address, CustomerV1, CustomerV2, CustomerV3

V1, V2, V3 = avro_schema(CustomerV1), avro_schema(CustomerV2), avro_schema(CustomerV3)


@pytest.fixture
def subject(topic: str) -> str:
    return f"{topic}-value"


def test_register_is_idempotent_for_the_same_schema(registry: Registry, subject: str) -> None:
    first = registry.register(subject, V1)
    assert registry.register(subject, V1) == first
    assert registry.versions(subject) == [1]


def test_equal_schemas_written_differently_get_the_same_id(
    registry: Registry, subject: str
) -> None:
    first = registry.register(subject, V1)
    shuffled = json.loads(json.dumps(V1, indent=4, sort_keys=True))
    shuffled["fields"][0]["type"] = {"type": "long"}
    assert canonical(shuffled) == canonical(V1)
    assert registry.register(subject, shuffled) == first
    assert registry.versions(subject) == [1]


def test_one_schema_under_two_subjects_has_one_id(registry: Registry, topic: str) -> None:
    assert registry.register(f"{topic}-a-value", V1) == registry.register(f"{topic}-b-value", V1)


def test_versions_latest_lookup_and_get_by_id(registry: Registry, subject: str) -> None:
    id1 = registry.register(subject, V1)
    id2 = registry.register(subject, V2)
    assert id1 != id2
    assert registry.versions(subject) == [1, 2]
    latest = registry.latest(subject)
    assert (latest.subject, latest.version, latest.schema_id) == (subject, 2, id2)
    assert canonical(latest.schema) == canonical(V2)
    old = registry.get_version(subject, 1)
    assert (old.version, old.schema_id) == (1, id1)
    assert registry.get_version(subject, "latest").version == 2
    assert canonical(registry.get_schema(id1)) == canonical(V1)
    found = registry.lookup(subject, V1)
    assert (found.version, found.schema_id) == (1, id1)
    assert subject in registry.subjects()


def test_unknown_subjects_versions_schemas_and_ids_are_not_found(
    registry: Registry, subject: str
) -> None:
    with pytest.raises(SchemaNotFound):
        registry.versions(subject)
    with pytest.raises(SchemaNotFound):
        registry.latest(subject)
    registry.register(subject, V1)
    with pytest.raises(SchemaNotFound):
        registry.get_version(subject, 7)
    with pytest.raises(SchemaNotFound):
        registry.lookup(subject, V2)
    with pytest.raises(SchemaNotFound):
        registry.get_schema(987654)


def test_delete_subject_keeps_schema_ids_valid(registry: Registry, subject: str) -> None:
    schema_id = registry.register(subject, V1)
    registry.register(subject, V2)
    assert registry.delete_subject(subject) == [1, 2]
    assert subject not in registry.subjects()
    with pytest.raises(SchemaNotFound):
        registry.versions(subject)
    assert canonical(registry.get_schema(schema_id)) == canonical(V1)


def test_compatibility_is_per_subject_with_a_global_default(
    registry: Registry, subject: str
) -> None:
    assert registry.get_compatibility() == "BACKWARD"
    assert registry.get_compatibility(subject) == "BACKWARD"
    registry.set_compatibility("full_transitive", subject)
    assert registry.get_compatibility(subject) == "FULL_TRANSITIVE"
    assert registry.get_compatibility() == "BACKWARD"


def test_an_incompatible_schema_is_refused_naming_subject_field_and_rule(
    registry: Registry, subject: str
) -> None:
    registry.register(subject, V1)
    with pytest.raises(IncompatibleSchema) as caught:
        registry.register(subject, V3)
    assert subject in str(caught.value)
    assert "tier" in str(caught.value)
    assert "BACKWARD" in str(caught.value)
    assert registry.versions(subject) == [1]
    registry.register(subject, V2)  # a field with a default is a compatible change
    assert registry.versions(subject) == [1, 2]


def test_level_none_accepts_any_change(registry: Registry, subject: str) -> None:
    registry.set_compatibility("NONE", subject)
    registry.register(subject, V1)
    registry.register(subject, V3)
    registry.register(subject, avro_schema(Address))
    assert registry.versions(subject) == [1, 2, 3]


def test_test_compatibility_reports_problems_without_registering(
    registry: Registry, subject: str
) -> None:
    registry.register(subject, V1)
    assert registry.test_compatibility(subject, V2) == []
    problems = registry.test_compatibility(subject, V3, 1)
    assert problems
    assert registry.versions(subject) == [1]


def test_an_invalid_schema_is_refused(registry: Registry, subject: str) -> None:
    bad: Any = {"type": "record", "name": "X", "fields": [{"name": "a", "type": "nope"}]}
    with pytest.raises(SchemaError) as caught:
        registry.register(subject, bad)
    assert not isinstance(caught.value, (IncompatibleSchema, SchemaNotFound))


def test_an_unknown_compatibility_level_is_a_config_error(registry: Registry) -> None:
    with pytest.raises(ConfigError, match="FULL_TRANSITIVE"):
        registry.set_compatibility("SIDEWAYS", "x-value")


def test_open_registry_picks_the_backend(tmp_path: Path, server_url: str) -> None:
    explicit = open_registry(f"embedded:{tmp_path / 'r.db'}")
    assert isinstance(explicit, EmbeddedRegistry)
    assert explicit.path == tmp_path / "r.db"
    explicit.close()
    http = open_registry(server_url)
    assert isinstance(http, HttpRegistry)
    http.close()
    with pytest.raises(ConfigError, match="unknown registry URL"):
        open_registry("ftp://nowhere")


def test_a_bare_embedded_url_is_resolved_by_config_not_here() -> None:
    # Where a bare `embedded` registry lives is config's one decision (beside the broker file).
    for url in ("embedded", "embedded:"):
        with pytest.raises(ConfigError, match="names no file"):
            open_registry(url)


def test_an_unreachable_http_registry_is_a_registry_error() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    registry = HttpRegistry(f"http://127.0.0.1:{port}")
    with pytest.raises(RegistryError, match="cannot reach the schema registry"):
        registry.subjects()
    registry.close()


def test_a_refusal_under_a_non_transitive_level_names_the_latest_version(
    registry: Registry, subject: str
) -> None:
    registry.register(subject, V1)
    registry.register(subject, V2)
    with pytest.raises(IncompatibleSchema, match="the latest schema"):
        registry.register(subject, V3)
