"""``ferryman version`` and ``ferryman topics``: what ferryman and the broker look like."""

from __future__ import annotations

from importlib.metadata import version as _dist_version

import typer
from rich.console import Console
from rich.table import Table

from ferryman.cli import app


@app.command()
def version() -> None:
    """Print ferryman's version."""
    typer.echo(_dist_version("ferryman"))


@app.command()
def topics(
    broker: str | None = typer.Option(
        None, help="Broker URL (embedded:PATH or kafka://host:port); default $FERRYMAN_BROKER."
    ),
) -> None:
    """List the broker's topics with their partitions, offsets and config."""
    from ferryman.broker import open_broker
    from ferryman.config import broker_location

    b = open_broker(broker_location(broker))
    try:
        admin = b.admin()
        table = Table("topic", "partitions", "records (latest-earliest)", "config")
        for name in admin.list_topics():
            info = admin.describe_topic(name)
            offsets = admin.offsets(name)
            span = sum(o.latest - o.earliest for o in offsets.values())
            cfg = ", ".join(f"{k}={v}" for k, v in sorted(info.config.items()))
            table.add_row(name, str(info.partitions), str(span), cfg)
        Console().print(table)
    finally:
        b.close()
