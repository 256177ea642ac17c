"""``ferryman lag module:service``: how far each of a service's mirrors is behind its topic, in
records and in seconds since the last applied record's timestamp; cheap (the topics' high
watermarks and the offsets stored with the rows), unlike ``reconcile``, which reads the log."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ferryman.cli.app import (
    BrokerUrl,
    DatabaseUrl,
    Debug,
    RegistryUrl,
    app,
    debugging,
    fail,
    reporting,
    set_locations,
)
from ferryman.cli.run import load_one_service

BEHIND_STATUS = 3
"""Exit status when a mirror is further behind than ``--max-records`` or ``--max-seconds``."""


@app.command()
def lag(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="The service, as module:attribute.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, one object.")] = False,
    max_records: Annotated[
        int | None,
        typer.Option(
            "--max-records", help="Exit with status 3 when a mirror is more records behind."
        ),
    ] = None,
    max_seconds: Annotated[
        float | None,
        typer.Option(
            "--max-seconds",
            help="Exit with status 3 when a mirror's last applied record is older than this "
            "while records wait.",
        ),
    ] = None,
    broker: BrokerUrl = None,
    registry: RegistryUrl = None,
    database: DatabaseUrl = None,
    debug: Debug = False,
) -> None:
    """Show each mirror's lag: records not applied yet, seconds since the last applied one."""
    debug = debugging(ctx, debug)
    for option, limit in (("--max-records", max_records), ("--max-seconds", max_seconds)):
        if limit is not None and limit < 0:
            fail("lag", f"{option} {limit} is negative; give a limit of 0 or more", 2)
    with reporting("lag", debug):
        set_locations(broker, registry, database)
        svc = load_one_service("lag", service, debug)
        lags = svc.lag()
        asyncio.run(svc.stop())  # closes the clients and the database's connections
    if not lags:
        fail("lag", f"service {svc.name!r} mirrors no topic; nothing to measure", 2)
    behind = sorted(
        topic
        for topic, lagging in lags.items()
        if (max_records is not None and lagging.offsets > max_records)
        or (
            max_seconds is not None
            and lagging.offsets > 0
            and (lagging.seconds is None or lagging.seconds > max_seconds)
        )
    )
    if as_json:
        report = [
            {
                "topic": topic,
                "lag_records": lagging.offsets,
                "lag_seconds": lagging.seconds,
                "behind": topic in behind,
            }
            for topic, lagging in sorted(lags.items())
        ]
        typer.echo(json.dumps({"service": svc.name, "mirrors": report}, indent=2))
    else:
        out = Console(highlight=False)
        table = Table("topic", "records behind", "seconds behind")
        for topic, lagging in sorted(lags.items()):
            seconds = "-" if lagging.seconds is None else f"{lagging.seconds:.1f}"
            style = "red" if topic in behind else None
            table.add_row(topic, str(lagging.offsets), seconds, style=style)
        out.print(table)
    if behind:
        raise typer.Exit(BEHIND_STATUS)
