"""``ferryman dlq list|show|replay``: dead letters, why they died, and sending them back to
their original topic (original key, value and headers, plus ``ferryman.replayed-from``)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from ferryman.cli.app import BrokerUrl, Debug, RegistryUrl, app, debugging, fail, reporting
from ferryman.cli.ops import Decoder, Json, operating, print_json, read_range, record_json
from ferryman.errors import ConfigError
from ferryman.records import Headers, Record, TopicPartition
from ferryman.runtime.headers import (
    DLQ_ATTEMPTS,
    DLQ_EXCEPTION_MESSAGE,
    DLQ_EXCEPTION_TYPE,
    DLQ_GROUP,
    DLQ_OFFSET,
    DLQ_PARTITION,
    DLQ_TOPIC,
    DLQ_TRACEBACK,
    REPLAYED_FROM,
)

dlq_app = typer.Typer(help="Dead letters: list, show, and replay them to their original topic.")
app.add_typer(dlq_app, name="dlq")

DlqTopic = Annotated[str, typer.Argument(help="The dead-letter topic, <topic>.dlq.")]
Where = Annotated[
    list[str] | None,
    typer.Option(
        "--where",
        help="Only dead letters where FIELD=VALUE (exception, group, partition, offset, key); "
        "repeat to combine.",
    ),
]
WHERE_FIELDS = ("exception", "group", "partition", "offset", "key")


@dataclass(frozen=True)
class DeadLetter:
    """A record of a dead-letter topic and what its ``ferryman.dlq.*`` headers say."""

    record: Record
    topic: str
    partition: int
    offset: int
    group: str
    exception: str
    message: str
    traceback: str
    attempts: int

    @classmethod
    def of(cls, record: Record) -> DeadLetter:
        h = {name: value.decode(errors="replace") for name, value in record.headers}
        if DLQ_TOPIC not in h:
            raise ConfigError(
                f"{record.topic}[{record.partition}]@{record.offset} has no {DLQ_TOPIC} header: "
                "not a ferryman dead letter; name a <topic>.dlq topic"
            )
        return cls(
            record,
            h[DLQ_TOPIC],
            int(h.get(DLQ_PARTITION, "-1")),
            int(h.get(DLQ_OFFSET, "-1")),
            h.get(DLQ_GROUP, ""),
            h.get(DLQ_EXCEPTION_TYPE, ""),
            h.get(DLQ_EXCEPTION_MESSAGE, ""),
            h.get(DLQ_TRACEBACK, ""),
            int(h.get(DLQ_ATTEMPTS, "0")),
        )

    def original_headers(self) -> Headers:
        """The headers the original record had (the ``ferryman.dlq.*`` ones dropped)."""
        return tuple((n, v) for n, v in self.record.headers if not n.startswith("ferryman.dlq."))

    def summary(self) -> dict[str, Any]:
        r = self.record
        return {
            "dlq": f"{r.topic}[{r.partition}]@{r.offset}",
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "group": self.group,
            "exception": self.exception,
            "message": self.message,
            "attempts": self.attempts,
        }


def dead_letters(op: Any, dlq: str, where: list[str] | None = None) -> list[DeadLetter]:
    """Every dead letter on ``dlq`` now (up to its latest offsets) matching ``where``."""
    if not dlq.endswith(".dlq"):
        raise ConfigError(f"{dlq!r} is not a dead-letter topic; name it as <topic>.dlq")
    tests = _where(where or [])
    admin = op.broker.admin()
    bounds = admin.offsets(dlq)
    ranges = {TopicPartition(dlq, p): (b.earliest, b.latest) for p, b in bounds.items()}
    decoder = Decoder(op.registry) if any(f == "key" for f, _ in tests) else None
    found = []
    for record in read_range(op.broker, ranges):
        letter = DeadLetter.of(record)
        if all(_matches(letter, f, v, decoder) for f, v in tests):
            found.append(letter)
    return found


def _where(clauses: list[str]) -> list[tuple[str, str]]:
    tests = []
    for clause in clauses:
        name, sep, value = clause.partition("=")
        if not sep or name.strip() not in WHERE_FIELDS:
            raise ConfigError(
                f"--where {clause!r}: write FIELD=VALUE with FIELD one of {', '.join(WHERE_FIELDS)}"
            )
        tests.append((name.strip(), value.strip()))
    return tests


def _matches(letter: DeadLetter, field: str, value: str, decoder: Decoder | None) -> bool:
    if field == "exception":
        # The whole dotted name or its last part: ValueError, myapp.errors.OutOfStock, OutOfStock.
        return value in (letter.exception, letter.exception.rsplit(".", 1)[-1])
    if field == "key":
        assert decoder is not None
        key = decoder.decode(letter.record.key)
        return str(key) == value
    return str(getattr(letter, field)) == value


@dlq_app.command("list")
def list_dead_letters(
    ctx: typer.Context,
    dlq: DlqTopic,
    where: Where = None,
    broker: BrokerUrl = None,
    registry: RegistryUrl = None,
    as_json: Json = False,
    debug: Debug = False,
) -> None:
    """One line per dead letter: original coordinates, group, exception and attempts."""
    with reporting("dlq list", debugging(ctx, debug)), operating(broker, registry) as op:
        letters = dead_letters(op, dlq, where)
    rows = [letter.summary() for letter in letters]
    if as_json:
        print_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("dead letter", "original", "group", "exception", "attempts", "message")
    for row in rows:
        table.add_row(
            row["dlq"],
            f"{row['topic']}[{row['partition']}]@{row['offset']}",
            row["group"],
            row["exception"],
            str(row["attempts"]),
            row["message"],
        )
    Console().print(table)
    typer.echo(f"{len(rows)} dead letter(s)", err=True)


@dlq_app.command()
def show(
    ctx: typer.Context,
    dlq: DlqTopic,
    where: Where = None,
    broker: BrokerUrl = None,
    registry: RegistryUrl = None,
    as_json: Json = False,
    debug: Debug = False,
) -> None:
    """Each dead letter in full: decoded key, value and headers, exception and traceback."""
    with reporting("dlq show", debugging(ctx, debug)), operating(broker, registry) as op:
        letters = dead_letters(op, dlq, where)
        decoder = Decoder(op.registry)
        full = [
            {
                **letter.summary(),
                "traceback": letter.traceback,
                **record_json(letter.record, decoder),
            }
            for letter in letters
        ]
    if as_json:
        print_json(full)
        return
    from rich.console import Console

    console = Console(soft_wrap=True)
    for item in full:
        console.print(
            f"[bold]{item['dlq']}[/] from {item['topic']}[{item['partition']}]@{item['offset']} "
            f"group {item['group']}, {item['attempts']} attempt(s)"
        )
        console.print(f"  {item['exception']}: {item['message']}", markup=False)
        console.print(f"  key: {item['key']}\n  value: {item['value']}", markup=False)
        console.print("  " + item["traceback"].strip().replace("\n", "\n  "), markup=False)


@dlq_app.command()
def replay(
    ctx: typer.Context,
    dlq: DlqTopic,
    where: Where = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be replayed; send nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Replay without asking.")] = False,
    broker: BrokerUrl = None,
    registry: RegistryUrl = None,
    as_json: Json = False,
    debug: Debug = False,
) -> None:
    """Send dead letters back to their original topic and partition, with their original key,
    value and headers plus ferryman.replayed-from. The counts come first; --dry-run stops there."""
    with reporting("dlq replay", debugging(ctx, debug)), operating(broker, registry) as op:
        letters = dead_letters(op, dlq, where)
        counts: dict[str, int] = {}
        for letter in letters:
            counts[letter.topic] = counts.get(letter.topic, 0) + 1
        if not as_json:
            for topic, n in sorted(counts.items()):
                typer.echo(f"{n} dead letter(s) to replay to {topic}", err=True)
        if dry_run or not letters:
            if as_json:
                print_json({"dry_run": dry_run, "replayed": 0, "would_replay": counts})
            else:
                typer.echo("dry run: nothing sent" if dry_run else "nothing to replay", err=True)
            return
        if not yes:
            if not sys.stdin.isatty():
                fail("dlq replay", "not confirmed: pass --yes to replay without a terminal", 2)
            if not typer.confirm(f"Replay {len(letters)} dead letter(s)?"):
                fail("dlq replay", "not replayed")
        sent = _send(op, letters)
    if as_json:
        print_json({"dry_run": False, "replayed": sent, "would_replay": counts})
    else:
        typer.echo(f"replayed {sent} dead letter(s)", err=True)


def _send(op: Any, letters: list[DeadLetter]) -> int:
    from rich.progress import Progress

    producer = op.broker.producer()
    sent = 0
    try:
        with Progress(transient=True, disable=not sys.stderr.isatty()) as progress:
            task = progress.add_task("replaying", total=len(letters))
            futures = []
            for letter in letters:
                r = letter.record
                headers = (
                    *letter.original_headers(),
                    (REPLAYED_FROM, f"{r.topic}[{r.partition}]@{r.offset}".encode()),
                )
                futures.append(
                    producer.send(
                        letter.topic,
                        r.value,
                        key=r.key,
                        headers=headers,
                        partition=letter.partition if letter.partition >= 0 else None,
                    )
                )
            for future in futures:
                future.result()
                sent += 1
                progress.advance(task)
    finally:
        producer.close()
    return sent
