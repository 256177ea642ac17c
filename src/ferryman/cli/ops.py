"""What the operator commands share: opening the broker and registry, reading partitions,
decoding records to plain data through the registry, positions, and output."""

from __future__ import annotations

import base64
import datetime as dt
import json
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from io import BytesIO
from typing import Annotated, Any
from uuid import UUID

import typer

from ferryman.broker import open_broker
from ferryman.broker.base import Admin, Broker, Consumer
from ferryman.errors import ConfigError, DecodeError, SchemaNotFound
from ferryman.records import Headers, Record, TopicPartition
from ferryman.schema.open import open_registry
from ferryman.schema.parsing import parse
from ferryman.schema.registry import Registry

Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]

MAGIC = 0
HEADER_SIZE = 5


@dataclass
class Operator:
    """The broker and (opened on first use) the registry that an operator command works on."""

    broker: Broker
    registry_url: str

    _registry: Registry | None = None

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = open_registry(self.registry_url)
        return self._registry

    def close(self) -> None:
        if self._registry is not None:
            self._registry.close()
        self.broker.close()


@contextmanager
def operating(broker: str | None, registry: str | None) -> Iterator[Operator]:
    """Open the broker and registry that ``--broker``/``--registry`` (else FERRYMAN_*) name."""
    from ferryman.config import resolve_locations

    where = resolve_locations(broker, registry)
    operator = Operator(open_broker(where.broker), where.registry)
    try:
        yield operator
    finally:
        operator.close()


@contextmanager
def admin_of(broker: str | None) -> Iterator[Admin]:
    """An admin client of the broker ``--broker`` (else FERRYMAN_BROKER) names."""
    from ferryman.config import broker_location

    opened = open_broker(broker_location(broker))
    try:
        admin = opened.admin()
        yield admin
    finally:
        opened.close()


class Decoder:
    """Turns wire-format keys and values into plain data with their writer schema (no model)."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._schemas: dict[int, Any] = {}

    def decode(self, data: bytes | None) -> Any:
        """None for None; Avro through the registry; else UTF-8 text, else ``{"base64": ...}``."""
        if data is None:
            return None
        if len(data) >= HEADER_SIZE and data[0] == MAGIC:
            schema_id = int.from_bytes(data[1:HEADER_SIZE], "big")
            try:
                return _plain(self.read(schema_id, data[HEADER_SIZE:]))
            except (SchemaNotFound, DecodeError, ValueError, EOFError, IndexError):
                pass  # not ours after all: shown raw below
        return raw(data)

    def read(self, schema_id: int, body: bytes) -> Any:
        import fastavro

        parsed = self._schemas.get(schema_id)
        if parsed is None:
            parsed = self._schemas[schema_id] = parse(self._registry.get_schema(schema_id))
        return fastavro.schemaless_reader(BytesIO(body), parsed, None)


def raw(data: bytes) -> Any:
    """Bytes as text where they are UTF-8, else base64."""
    try:
        return data.decode()
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode()}


def _plain(value: Any) -> Any:
    """A decoded Avro datum as JSON-ready data (logical types as text, bytes as base64)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode()}
    return value


def headers_out(headers: Headers) -> list[list[Any]]:
    """Headers as ``[name, text]`` pairs (repeats kept, order kept)."""
    return [[name, raw(value)] for name, value in headers]


def headers_in(pairs: Any, where: str) -> Headers:
    """Headers from the JSON form ``headers_out`` writes (or a name -> text object)."""
    if pairs is None:
        return ()
    items = pairs.items() if isinstance(pairs, dict) else pairs
    out: list[tuple[str, bytes]] = []
    for item in items:
        if not (isinstance(item, list | tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise ConfigError(f"{where}: a header is [name, text]; got {item!r}")
        value = item[1]
        if isinstance(value, dict) and set(value) == {"base64"}:
            out.append((item[0], base64.b64decode(value["base64"])))
        elif isinstance(value, str):
            out.append((item[0], value.encode()))
        else:
            raise ConfigError(
                f'{where}: header {item[0]!r} is {value!r}; give text or {{"base64": ...}}'
            )
    return tuple(out)


def record_json(record: Record, decoder: Decoder) -> dict[str, Any]:
    """One record as the JSON object ``tail --json`` prints and ``produce`` reads."""
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": decoder.decode(record.key),
        "value": decoder.decode(record.value),
        "headers": headers_out(record.headers),
    }


def parse_position(text: str) -> str | int | dt.datetime:
    """``earliest``, ``latest``, an offset (a whole number) or an ISO-8601 time."""
    text = text.strip()
    if text in ("earliest", "latest"):
        return text
    if text.lstrip("-").isdigit():
        offset = int(text)
        if offset < 0:
            raise ConfigError(f"offset {text} is negative; give an offset of 0 or more")
        return offset
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"{text!r} is not a position: write earliest, latest, an offset (e.g. 42) or an "
            "ISO-8601 time (e.g. 2026-12-01T05:00:00Z)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def offsets_at(
    broker: Broker, topic: str, partitions: list[int], position: str | int | dt.datetime
) -> dict[TopicPartition, int]:
    """The offset each partition has at ``position`` (an offset is kept within the log)."""
    admin = broker.admin()
    bounds = admin.offsets(topic)
    out: dict[TopicPartition, int] = {}
    for p in partitions:
        tp, b = TopicPartition(topic, p), bounds[p]
        if position == "earliest":
            out[tp] = b.earliest
        elif position == "latest":
            out[tp] = b.latest
        elif isinstance(position, int):
            out[tp] = min(max(position, b.earliest), b.latest)
        else:
            assert isinstance(position, dt.datetime)
            out[tp] = _first_at(broker, tp, b.earliest, b.latest, position)
    return out


def _first_at(broker: Broker, tp: TopicPartition, start: int, end: int, at: dt.datetime) -> int:
    """The first offset whose timestamp is at or after ``at`` (``end`` if none), by reading."""
    # Neither backend's Admin looks offsets up by time; reading is slower but the same on both.
    wanted = int(at.timestamp() * 1000)
    for record in read_range(broker, {tp: (start, end)}):
        if record.timestamp >= wanted:
            return record.offset
    return end


def read_range(
    broker: Broker, ranges: Mapping[TopicPartition, tuple[int, int]], follow: bool = False
) -> Iterator[Record]:
    """Records of each partition from its start offset up to (not including) its end offset,
    in offset order per partition; with ``follow``, then everything that arrives, until stopped."""
    todo = {tp: r for tp, r in ranges.items() if follow or r[0] < r[1]}
    if not todo:
        return
    consumer: Consumer = broker.consumer(None)
    try:
        consumer.assign(todo)
        for tp, (start, _) in todo.items():
            consumer.seek(tp, start)
        left = {tp for tp, (start, end) in todo.items() if start < end}
        while left or follow:
            for record in consumer.poll(0.5):
                tp = TopicPartition(record.topic, record.partition)
                end = todo[tp][1]
                if record.offset >= end and not follow:
                    left.discard(tp)
                    continue
                yield record
                if record.offset + 1 >= end:
                    left.discard(tp)
            # Compaction may have removed the records before ``end``: position tells.
            for tp in list(left):
                if consumer.position(tp) >= todo[tp][1]:
                    left.discard(tp)
    finally:
        consumer.close()


def print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout."""
    typer.echo(json.dumps(data, indent=2, default=str))


def json_line(data: Any) -> None:
    """``data`` as one JSON line, flushed at once (for ``--follow`` piped to another tool)."""
    sys.stdout.write(json.dumps(data, default=str) + "\n")
    sys.stdout.flush()


def time_text(ms: int) -> str:
    """Epoch milliseconds as an ISO-8601 UTC time."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds")
