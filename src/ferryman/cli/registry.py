"""``ferryman registry serve``: the embedded schema registry over Confluent's REST API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ferryman.cli import app

registry_app = typer.Typer(
    help="The embedded schema registry.", no_args_is_help=True, add_completion=False
)
app.add_typer(registry_app, name="registry")


@registry_app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8081,
    path: Annotated[
        Path | None,
        typer.Option(help="Registry file; default registry.db beside the embedded broker's file."),
    ] = None,
) -> None:
    """Serve the embedded registry with the Confluent Schema Registry REST API."""
    import uvicorn

    from ferryman.schema.embedded import EmbeddedRegistry
    from ferryman.schema.server import create_app

    registry = EmbeddedRegistry(path)
    typer.echo(f"ferryman registry {registry.path} on http://{host}:{port}", err=True)
    try:
        uvicorn.run(create_app(registry), host=host, port=port, log_level="warning")
    finally:
        registry.close()
