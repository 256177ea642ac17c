"""``ferryman republish module:service TOPIC``: backfill an entity source's table into the outbox."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from ferryman.cli.app import (
    BrokerUrl,
    DatabaseUrl,
    Debug,
    RegistryUrl,
    app,
    debugging,
    reporting,
    set_locations,
)
from ferryman.cli.run import load_one_service


@app.command()
def republish(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="The service that sources the topic.")],
    topic: Annotated[str, typer.Argument(help="The entity topic to backfill, by name.")],
    broker: BrokerUrl = None,
    registry: RegistryUrl = None,
    database: DatabaseUrl = None,
    where: Annotated[
        str | None,
        typer.Option(help="Only the joined table's rows matching this SQL condition."),
    ] = None,
    rate: Annotated[
        float | None, typer.Option(help="At most this many records a second (joined tables).")
    ] = None,
    debug: Debug = False,
) -> None:
    """Write every row of TOPIC's source table into the service's outbox as an upsert, or
    publish every row (--where: those matching) of TOPIC's joined table now.

    A relay (inside the running service, or `ferryman relay`) publishes an outbox's rows.
    """
    debug = debugging(ctx, debug)
    with reporting("republish", debug):
        set_locations(broker, registry, database)
        svc = load_one_service("republish", service, debug)
        joined = topic in svc.joined_sources
        try:
            with Progress(
                TextColumn(f"republishing {topic}"),
                BarColumn(),
                MofNCompleteColumn(),
                console=Console(stderr=True),
                transient=True,
                disable=not joined,
            ) as bar:
                task = bar.add_task("republish", total=None)
                count = svc.republish(
                    topic,
                    where,
                    lambda done, total: bar.update(task, completed=done, total=total),
                    rate,
                )
        finally:
            asyncio.run(svc.stop())  # closes what republishing opened
        where_to = "published" if joined else "written to the outbox"
        typer.echo(f"ferryman republish: {count} rows of {topic!r} {where_to}", err=True)
