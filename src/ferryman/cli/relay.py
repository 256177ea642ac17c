"""``ferryman relay module:service``: run only a service's outbox relay until SIGTERM/SIGINT."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Annotated

import typer

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
from ferryman.cli.run import load_one_service, without_password


@app.command()
def relay(
    ctx: typer.Context,
    service: Annotated[
        str, typer.Argument(help="The service whose outbox to relay, as module:attribute.")
    ],
    broker: BrokerUrl = None,
    registry: RegistryUrl = None,
    database: DatabaseUrl = None,
    debug: Debug = False,
) -> None:
    """Publish a service's committed outbox rows until SIGTERM or SIGINT, without its handlers.

    Run as many as you like: relays split the outbox's partitions by lease.
    """
    debug = debugging(ctx, debug)
    with reporting("relay", debug):
        set_locations(broker, registry, database)
        svc = load_one_service("relay", service, debug)
        stop = threading.Event()

        def on_signal(_sig: int, _frame: FrameType | None) -> None:
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
        where = svc.locations
        typer.echo(
            f"ferryman relay: service {svc.name!r}\n  broker    {where.broker}\n"
            f"  database  {without_password(where.database)}",
            err=True,
        )
        svc.run_relay(stop)
