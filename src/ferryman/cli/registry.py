"""``ferryman registry serve``: the embedded schema registry over Confluent's REST API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ferryman.cli.app import app
from ferryman.config import resolve_locations
from ferryman.errors import ConfigError

registry_app = typer.Typer(
    help="The embedded schema registry.", no_args_is_help=True, add_completion=False
)
app.add_typer(registry_app, name="registry")

_WILDCARDS = ("0.0.0.0", "::", "")


@registry_app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8081,
    path: Annotated[
        Path | None,
        typer.Option(help="Registry file; default registry.db beside the embedded broker's file."),
    ] = None,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            help="A Host name to answer to besides the loopback ones and --host (repeatable); "
            "'*' answers to any, which gives up the DNS-rebinding guard."
        ),
    ] = None,
    max_body: Annotated[
        str, typer.Option(help="Largest request body, in bytes or with KiB/MiB (413 beyond it).")
    ] = "1MiB",
    auth: Annotated[
        str | None,
        typer.Option(
            envvar="FERRYMAN_REGISTRY_AUTH",
            show_envvar=True,
            help="USER:PASSWORD that clients must send by HTTP basic auth; prefer the "
            "environment variable, which other users cannot read from the process list.",
        ),
    ] = None,
) -> None:
    """Serve the embedded registry with the Confluent Schema Registry REST API."""
    import uvicorn

    from ferryman.schema.embedded import EmbeddedRegistry
    from ferryman.schema.guard import ServerSettings, exposure_warning, parse_auth, parse_size
    from ferryman.schema.server import create_app

    hosts = list(allow_host or [])
    if host not in _WILDCARDS:
        hosts.append(host)  # clients that dial the bound address send it as their Host
    try:
        limit = parse_size(max_body)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--max-body") from exc
    try:
        credentials = parse_auth(auth) if auth is not None else None
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--auth") from exc
    settings = ServerSettings(allow_hosts=tuple(hosts), max_body=limit, auth=credentials)

    if path is None:
        registry_url = resolve_locations().registry
        if not registry_url.startswith("embedded:"):
            raise ConfigError(
                f"FERRYMAN_REGISTRY names {registry_url}, not an embedded registry: pass --path"
            )
        path = Path(registry_url[len("embedded:") :])
    registry = EmbeddedRegistry(path)
    warning = exposure_warning(host, settings)
    if warning is not None:
        typer.echo(warning, err=True)
    typer.echo(f"ferryman registry {registry.path} on http://{host}:{port}", err=True)
    try:
        uvicorn.run(create_app(registry, settings), host=host, port=port, log_level="warning")
    finally:
        registry.close()
