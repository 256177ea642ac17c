"""``ferryman demo``: four services on an embedded broker in a temporary directory."""

from __future__ import annotations

import typer

from ferryman.cli.app import app


@app.command()
def demo(
    keep: bool = typer.Option(
        False, "--keep", help="Keep the broker's directory afterwards, to look at it with ferryman."
    ),
) -> None:
    """Run a small system of services (entities, events, requests) and print what flows."""
    from ferryman.demo.run import main

    main(keep=keep)
