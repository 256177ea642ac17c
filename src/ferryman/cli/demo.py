"""``ferryman demo``: four services on an embedded broker in a temporary directory."""

from __future__ import annotations

from typing import Annotated

import typer

from ferryman.cli.app import app, fail


@app.command()
def demo(
    keep: bool = typer.Option(
        False, "--keep", help="Keep the broker's directory afterwards, to look at it with ferryman."
    ),
    http_port: Annotated[
        int | None,
        typer.Option(
            "--http-port",
            help="Serve the services' /metrics and health on this port (0: any free port) and "
            "keep them running until Ctrl-C.",
        ),
    ] = None,
) -> None:
    """Run a small system of services (entities, events, requests) and print what flows."""
    from ferryman.demo.run import main

    if http_port is not None and not 0 <= http_port <= 65535:
        fail("demo", f"--http-port {http_port}: write a port from 1 to 65535 (0: any free port)", 2)
    main(keep=keep, http_port=http_port)
