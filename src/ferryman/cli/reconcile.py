"""``ferryman reconcile module:service [TOPIC]``: compare a service's mirror tables with their
topics' latest state, read from the log; exit status 3 on drift (``--json`` for scripts)."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

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

DRIFT_STATUS = 3
"""Exit status when a table differs from its topic (1 is for when the comparison failed)."""


@app.command()
def reconcile(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="The service, as module:attribute.")],
    topic: Annotated[
        str | None, typer.Argument(help="The mirrored topic to check (default: every mirror).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, one object.")] = False,
    broker: BrokerUrl = None,
    registry: RegistryUrl = None,
    database: DatabaseUrl = None,
    debug: Debug = False,
) -> None:
    """Compare mirror tables with their topics: keys missing, extra and differing, and lag."""
    debug = debugging(ctx, debug)
    with reporting("reconcile", debug):
        set_locations(broker, registry, database)
        svc = load_one_service("reconcile", service, debug)
        err = Console(stderr=True)
        with Progress(
            TextColumn("reading the log"),
            BarColumn(),
            MofNCompleteColumn(),
            console=err,
            transient=True,
            disable=as_json,
        ) as bar:
            task = bar.add_task("read", total=None)
            drifts = svc.reconcile(
                topic, lambda done, total: bar.update(task, completed=done, total=total)
            )
        lags = svc.lag()
        asyncio.run(svc.stop())  # closes the clients and the database's connections
    if as_json:
        report = [
            {
                **d.as_dict(),
                "lag_offsets": lags[d.topic].offsets,
                "lag_seconds": lags[d.topic].seconds,
            }
            for d in drifts
        ]
        typer.echo(json.dumps({"service": svc.name, "mirrors": report}, indent=2))
    else:
        out = Console(highlight=False)
        table = Table("topic", "table", "keys", "rows", "missing", "extra", "differing", "lag")
        for d in drifts:
            lag = lags[d.topic]
            table.add_row(
                d.topic,
                d.table,
                str(d.keys),
                str(d.rows),
                str(d.missing),
                str(d.extra),
                str(d.differing),
                f"{lag.offsets} records" + ("" if lag.seconds is None else f", {lag.seconds:.1f}s"),
            )
        out.print(table)
        for d in drifts:
            for kind, samples in (
                ("missing", d.missing_samples),
                ("extra", d.extra_samples),
                ("differing", d.differing_samples),
            ):
                if samples:
                    out.print(f"{d.topic}: {kind} keys, e.g. {', '.join(map(repr, samples))}")
        if not any(d.drifted for d in drifts):
            out.print("[green]in sync[/]: every table equals its topic's latest state")
    if any(d.drifted for d in drifts):
        raise typer.Exit(DRIFT_STATUS)
