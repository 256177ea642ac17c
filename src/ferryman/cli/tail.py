"""``ferryman tail`` and ``ferryman produce``: read a topic decoded through the registry, and
write JSON lines to it encoded with its registered schemas (no model class needed)."""

from __future__ import annotations

import json
import sys
from io import BytesIO
from typing import Annotated, Any

import typer

from ferryman.cli.app import BrokerUrl, Debug, RegistryUrl, app, debugging, fail, reporting
from ferryman.cli.ops import (
    Decoder,
    headers_in,
    json_line,
    offsets_at,
    operating,
    parse_position,
    read_range,
    record_json,
    time_text,
)
from ferryman.errors import ConfigError, SchemaError, SchemaNotFound
from ferryman.records import Headers, Record, TopicPartition


@app.command()
def tail(
    ctx: typer.Context,
    topic: Annotated[str, typer.Argument(help="The topic to read.")],
    start: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="earliest, latest, an offset or an ISO-8601 time; default: the last -n records.",
            show_default=False,
        ),
    ] = None,
    count: Annotated[
        int | None,
        typer.Option(
            "-n",
            help="How many records: the last N (default 10) without --from; at most N from "
            "--from (default all, --follow included). 0: every one.",
            min=0,
            show_default=False,
        ),
    ] = None,
    key: Annotated[
        str | None, typer.Option("--key", help="Only records whose key (as text) is this.")
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new records until Ctrl-C.")
    ] = False,
    partition: Annotated[
        int | None, typer.Option("--partition", "-p", help="Read only this partition.")
    ] = None,
    broker: BrokerUrl = None,
    registry: RegistryUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object a line.")] = False,
    debug: Debug = False,
) -> None:
    """Print a topic's records with keys, values and headers decoded through the registry."""
    with reporting("tail", debugging(ctx, debug)), operating(broker, registry) as op:
        position = parse_position(start) if start is not None else None
        admin = op.broker.admin()
        bounds = admin.offsets(topic)
        parts = sorted(bounds)
        if partition is not None:
            if partition not in bounds:
                raise ConfigError(
                    f"topic {topic!r} has partitions {parts[0]}..{parts[-1]}, not {partition}"
                )
            parts = [partition]
        if position is None and count is None:
            count = 10
        if position is None and (key is None or count == 0):
            # Like tail(1): the last records; each partition's last ``count`` hold them all.
            last = count or 0
            starts = {
                TopicPartition(topic, p): max(bounds[p].earliest, bounds[p].latest - last)
                if last
                else bounds[p].earliest
                for p in parts
            }
        else:
            starts = offsets_at(op.broker, topic, parts, position or "earliest")
        ranges = {tp: (s, bounds[tp.partition].latest) for tp, s in starts.items()}
        decoder = Decoder(op.registry)
        wanted = None if key is None else key

        def chosen(record: Record) -> bool:
            return wanted is None or _key_text(decoder.decode(record.key)) == wanted

        if position is None and count:
            # Last ``count`` over all partitions: by time, as they happened.
            found = [r for r in read_range(op.broker, ranges) if chosen(r)]
            found.sort(key=lambda r: (r.timestamp, r.partition, r.offset))
            for record in found[-count:]:
                _print(record, decoder, as_json)
            if not follow:
                return
            ranges = {tp: (end, end) for tp, (_, end) in ranges.items()}
        printed = 0
        try:
            for record in read_range(op.broker, ranges, follow=follow):
                if not chosen(record):
                    continue
                _print(record, decoder, as_json)
                printed += 1
                if count and printed >= count and position is not None:
                    break
        except KeyboardInterrupt:
            pass


def _key_text(key: Any) -> str:
    return key if isinstance(key, str) else json.dumps(key)


def _print(record: Record, decoder: Decoder, as_json: bool) -> None:
    data = record_json(record, decoder)
    if as_json:
        json_line(data)
        return
    from rich.console import Console

    head = f"[bold]{record.topic}[{record.partition}]@{record.offset}[/]"
    console = Console(soft_wrap=True)
    console.print(f"{head} {time_text(record.timestamp)} key={json.dumps(data['key'])}")
    console.print(f"  value: {json.dumps(data['value'], default=str)}", markup=False)
    for name, value in data["headers"]:
        console.print(f"  {name}: {value}", markup=False)


# -- produce ---------------------------------------------------------------------------------


@app.command()
def produce(
    ctx: typer.Context,
    topic: Annotated[str, typer.Argument(help="The topic to write to.")],
    broker: BrokerUrl = None,
    registry: RegistryUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    debug: Debug = False,
) -> None:
    """Send JSON lines from stdin, each {"key": ..., "value": ..., "headers": [[name, text]]},
    encoded with the topic's latest registered schemas. Every line is checked before any is
    sent: a bad line is refused with its number and nothing is sent."""
    with reporting("produce", debugging(ctx, debug)), operating(broker, registry) as op:
        encoder = Encoder(op.registry, topic)
        records: list[tuple[bytes | None, bytes | None, Headers]] = []
        for number, line in enumerate(sys.stdin, 1):
            if not line.strip():
                continue
            records.append(encoder.encode_line(line, f"line {number}"))
        if not records:
            fail("produce", "no records on stdin: write one JSON object a line", 2)
        producer = op.broker.producer()
        sent = 0
        try:
            futures = [
                producer.send(topic, value, key=key, headers=headers)
                for key, value, headers in records
            ]
            for future in futures:
                future.result()
                sent += 1
        finally:
            left = producer.flush(30)
            producer.close()
        if left:
            fail("produce", f"{sent} of {len(records)} record(s) acknowledged; {left} were not")
    if as_json:
        json_line({"topic": topic, "sent": sent})
    else:
        typer.echo(f"sent {sent} record(s) to {topic}", err=True)


class Encoder:
    """Encodes JSON lines with a topic's latest registered key and value schemas."""

    def __init__(self, registry: Any, topic: str) -> None:
        from ferryman.schema.parsing import parse

        self.topic = topic
        self.schemas: dict[str, tuple[int, Any] | None] = {}
        for part in ("key", "value"):
            try:
                latest = registry.latest(f"{topic}-{part}")
            except SchemaNotFound:
                self.schemas[part] = None
                continue
            self.schemas[part] = (latest.schema_id, parse(latest.schema))
        if self.schemas["value"] is None:
            raise SchemaNotFound(
                f"no schema is registered for {topic}-value: produce needs the topic's schema; "
                "run the service that owns the topic once (it registers its schema), or check "
                "the topic name and --registry"
            )

    def encode_line(self, line: str, where: str) -> tuple[bytes | None, bytes | None, Headers]:
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: not JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(data, dict) or "value" not in data:
            raise ConfigError(
                f'{where}: write an object {{"key": ..., "value": ..., "headers": [...]}} '
                "(value null is a tombstone)"
            )
        unknown = set(data) - {
            "key",
            "value",
            "headers",
            "topic",
            "partition",
            "offset",
            "timestamp",
        }
        if unknown:
            raise ConfigError(
                f"{where}: unknown field(s) {sorted(unknown)}; use key, value, headers"
            )
        key = self._encode("key", data.get("key"), where)
        value = self._encode("value", data["value"], where)
        return key, value, headers_in(data.get("headers"), where)

    def _encode(self, part: str, datum: Any, where: str) -> bytes | None:
        import fastavro
        from fastavro.validation import ValidationError, validate

        if datum is None and part == "key":
            if self.schemas["key"] is not None:
                raise ConfigError(f"{where}: topic {self.topic!r} is keyed; give a key")
            return None
        if datum is None:
            return None  # a tombstone
        found = self.schemas[part]
        if found is None:
            raise ConfigError(
                f"{where}: topic {self.topic!r} has no key schema ({self.topic}-key); "
                "leave the key out"
            )
        schema_id, parsed = found
        try:
            validate(datum, parsed, raise_errors=True)
            out = BytesIO()
            out.write(bytes((0,)) + schema_id.to_bytes(4, "big"))
            fastavro.schemaless_writer(out, parsed, datum)
        except (ValidationError, ValueError, TypeError, AttributeError) as exc:
            text = "; ".join(map(str, exc.errors)) if isinstance(exc, ValidationError) else str(exc)
            raise SchemaError(
                f"{where}: the {part} does not fit {self.topic}-{part} (schema id {schema_id}): "
                f"{' '.join(text.split())}"
            ) from None
        return out.getvalue()
