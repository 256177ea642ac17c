"""``ferryman republish module:service TOPIC``: backfill an entity source's table into the outbox."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

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
from ferryman.cli.run import load_service


@app.command()
def republish(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="The service that sources the topic.")],
    topic: Annotated[str, typer.Argument(help="The entity topic to backfill, by name.")],
    broker: BrokerUrl = None,
    registry: RegistryUrl = None,
    database: DatabaseUrl = None,
    debug: Debug = False,
) -> None:
    """Write every row of TOPIC's source table into the service's outbox as an upsert.

    A relay (inside the running service, or `ferryman relay`) then publishes them.
    """
    from ferryman.service.core import Service

    debug = debugging(ctx, debug)
    with reporting("republish", debug):
        set_locations(broker, registry, database)
        svc = load_service(service, debug)
        if not isinstance(svc, Service):
            fail("republish", f"{service!r} is a {type(svc).__name__}, not a ferryman Service", 2)
        try:
            count = svc.republish(topic)
        finally:
            asyncio.run(svc.stop())  # closes what republishing opened
        typer.echo(f"ferryman republish: {count} rows of {topic!r} written to the outbox", err=True)
