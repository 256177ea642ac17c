"""``ferryman version``: what ferryman is (the broker's topics are in ``cli/topics.py``)."""

from __future__ import annotations

import typer

from ferryman.cli.app import app, ferryman_version


@app.command()
def version() -> None:
    """Print ferryman's version (also: ferryman --version)."""
    typer.echo(ferryman_version())
