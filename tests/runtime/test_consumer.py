"""The consumer loop's hand-over: rows reach the decoders as they were polled, and the decoders
are cached in one place (Serde)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from tests.waiting import eventually

from ferryman.records import Record, Row
from ferryman.runtime.serde import Serde
from ferryman.topics import EventTopic

from .conftest import Env, run


@dataclass
class Tick:
    n: int


def test_records_reach_a_value_handler_as_rows_without_a_record_built_each(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticks = EventTopic(env.name("ticks"), Tick, partitions=2)
    seen: list[type[Any]] = []
    value_decoder = Serde.value_decoder

    def spying(self: Serde, topic: Any, *, lookup: bool = True) -> Callable[[Row], Any]:
        decode = value_decoder(self, topic, lookup=lookup)

        def spy(row: Row) -> Any:
            seen.append(type(row))
            return decode(row)

        return spy

    monkeypatch.setattr(Serde, "value_decoder", spying)
    handled: list[int] = []

    async def main() -> None:
        svc = env.service("ticker")

        @svc.on(ticks)
        async def tick(t: Tick) -> None:
            handled.append(t.n)

        async with svc:
            for n in range(50):
                svc.emit(ticks, Tick(n))
            svc.flush()
            await eventually(lambda: len(handled) == 50, env.timeout, lambda: len(handled))

    run(main())
    assert sorted(handled) == list(range(50))
    assert set(seen) == {tuple}, "the poll's rows are decoded as they are, no Record per record"
    assert Record not in seen


class IntCodec:
    """A codec for a one-field record: the value is the byte."""

    def encode(self, value: Any, ctx: Any) -> bytes:
        return bytes([value.n])

    def decode(self, data: bytes, ctx: Any) -> Any:
        return Tick(data[0])


def test_serde_caches_one_decoder_per_topic_and_lookup() -> None:
    ticks = EventTopic("ticks", Tick, partitions=1)
    serde = Serde(lambda model, compatibility: IntCodec())
    cached = serde.value_decoder(ticks, lookup=False)
    assert serde.value_decoder(ticks, lookup=False) is cached, "built once, kept by Serde"
    assert serde.value_decoder(ticks, lookup=True) is not cached
    row: Row = ("ticks", 0, 5, None, b"\x07", (), 0)
    assert cached(row) == Tick(7)
    assert serde.decode_value(ticks, Record._make(row)) == Tick(7)
