"""What the operator commands share: positions, and one-line errors for what was typed wrong."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest

import ferryman as fm
from ferryman.cli.ops import parse_position
from ferryman.errors import ConfigError

from .operating import Place, run


def test_positions() -> None:
    assert parse_position("earliest") == "earliest"
    assert parse_position(" latest ") == "latest"
    assert parse_position("42") == 42
    assert parse_position("2026-12-01T05:00:00Z") == dt.datetime(2026, 12, 1, 5, tzinfo=dt.UTC)
    assert parse_position("2026-12-01T05:00:00") == dt.datetime(2026, 12, 1, 5, tzinfo=dt.UTC)
    with pytest.raises(ConfigError, match="not a position"):
        parse_position("yesterday")
    with pytest.raises(ConfigError, match="negative"):
        parse_position("-3")


@dataclass
class Thing:
    id: int


def test_bad_input_is_one_line_naming_what_to_write(place: Place) -> None:
    things = fm.EntityTopic(place.name("things"), Thing, partitions=2)

    async def main() -> None:
        async with place.service("owner") as svc:
            await svc.publish(things, Thing(1))

    run(main())
    cases = [
        (("tail", things.name, "--from", "yesterday"), "not a position"),
        (("tail", things.name, "--partition", "5"), "not 5"),
        (("tail", place.name("absent")), "UnknownTopic"),
        (("groups", "reset", "g", "--topic", things.name, "--to", "soon"), "not a position"),
    ]
    for args, says in cases:
        result = place.invoke(*args)
        assert result.exit_code == 1, (args, result.stdout)
        assert says in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
        assert result.stderr.startswith(f"ferryman {args[0]}")


def test_kafka_without_a_registry_is_refused_in_one_line() -> None:
    from .operating import invoke

    result = invoke("tail", "t", "--broker", "kafka://127.0.0.1:1")
    assert result.exit_code == 1
    assert "FERRYMAN_REGISTRY" in result.stderr
