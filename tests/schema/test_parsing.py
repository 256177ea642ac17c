"""Schema text is read in one place, the same for registries, compatibility and hand-written schemas."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferryman.errors import SchemaError
from ferryman.schema import load_schema
from ferryman.schema.compat import can_read
from ferryman.schema.parsing import parse_schema_text

RECORD = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "long"}]}


def test_text_a_type_name_and_a_parsed_schema_are_read_alike() -> None:
    assert parse_schema_text(' {"type": "record", "name": "R", "fields": []}') == {
        "type": "record",
        "name": "R",
        "fields": [],
    }
    assert parse_schema_text('"long"') == "long"
    assert parse_schema_text("long") == "long"
    assert parse_schema_text(RECORD) is RECORD


def test_bad_text_is_the_same_schema_error_everywhere() -> None:
    for read in (parse_schema_text, load_schema, lambda text: can_read(text, "int")):
        with pytest.raises(SchemaError, match="the schema text is not JSON"):
            read('{"type": ')


def test_a_schema_file_must_hold_json(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.avsc", tmp_path / "bad.avsc"
    good.write_text('"long"')
    bad.write_text("long")
    assert load_schema(good) == "long"
    with pytest.raises(SchemaError, match="is not valid JSON"):
        load_schema(bad)
