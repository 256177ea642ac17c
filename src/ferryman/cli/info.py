"""``ferryman version`` and ``ferryman topics``: what ferryman and the broker look like."""

from __future__ import annotations

import json
import shutil
import sys
from typing import Annotated, Any

import typer

from ferryman.cli.app import BrokerUrl, Debug, app, debugging, ferryman_version, reporting
from ferryman.errors import UnknownTopic


@app.command()
def version() -> None:
    """Print ferryman's version (also: ferryman --version)."""
    typer.echo(ferryman_version())


@app.command()
def topics(
    ctx: typer.Context,
    broker: BrokerUrl = None,
    show_all: Annotated[
        bool,
        typer.Option("--all", help="Show every setting, the broker's defaults too."),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON, one object per topic.")
    ] = False,
    debug: Debug = False,
) -> None:
    """List the broker's topics: partitions, records, and the settings made on each topic."""
    from ferryman.broker import open_broker
    from ferryman.config import broker_location

    with reporting("topics", debugging(ctx, debug)):
        rows = _describe(open_broker(broker_location(broker)), show_all)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    elif _on_terminal() and _fits(rows):
        _print_table(rows)
    else:
        # Piped, or names too long for the table: whole names, one tab-separated line per topic.
        typer.echo("topic\tpartitions\trecords\tconfig")
        for row in rows:
            typer.echo(
                f"{row['topic']}\t{row['partitions']}\t{row['records']}\t{_settings(row['config'])}"
            )


def _on_terminal() -> bool:
    return sys.stdout.isatty()


def _fits(rows: list[dict[str, Any]]) -> bool:
    """Whether the table has room for whole names (Rich cuts a row at the terminal's edge)."""
    widest = max((len(row["topic"]) for row in rows), default=0)
    return widest + 40 <= shutil.get_terminal_size().columns


def _describe(broker: Any, show_all: bool) -> list[dict[str, Any]]:
    """One dict per topic: name, partitions, records (latest - earliest) and its settings."""
    try:
        admin = broker.admin()
        rows = []
        for name in admin.list_topics():
            try:
                info = admin.describe_topic(name)
                offsets = admin.offsets(name)
            except UnknownTopic:
                continue  # deleted between the listing and its description: not there any more
            config = {
                k: v for k, v in sorted(info.config.items()) if show_all or k not in info.defaults
            }
            rows.append(
                {
                    "topic": name,
                    "partitions": info.partitions,
                    "records": sum(o.latest - o.earliest for o in offsets.values()),
                    "config": config,
                }
            )
        return rows
    finally:
        broker.close()


def _settings(config: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items())


def _print_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Column, Table

    # The name is what people copy: never cut or wrapped, even on a narrow terminal.
    widest = max((len(row["topic"]) for row in rows), default=5)
    topic = Column("topic", no_wrap=True, overflow="ignore", min_width=widest)
    table = Table(topic, "partitions", "records (latest-earliest)", "config")
    for row in rows:
        table.add_row(
            row["topic"], str(row["partitions"]), str(row["records"]), _settings(row["config"])
        )
    Console().print(table)
