"""The public names of ferryman.schema exist and are listed once."""

from __future__ import annotations

import ferryman.schema as schema


def test_every_exported_name_exists_and_is_listed_once() -> None:
    assert len(schema.__all__) == len(set(schema.__all__))
    for name in schema.__all__:
        assert getattr(schema, name) is not None, name
    for name in ("AvroCodec", "EmbeddedRegistry", "HttpRegistry", "Registry", "open_registry"):
        assert name in schema.__all__
