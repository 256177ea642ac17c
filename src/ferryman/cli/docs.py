"""``ferryman docs module:svc ... -o DIR``: the system as an AsyncAPI 3.0 document
(``asyncapi.json``) and an HTML page with its topology (``index.html``, self-contained; the
picture alone as ``topology.svg``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ferryman.cli.app import BrokerUrl, Debug, RegistryUrl, app, debugging, reporting, set_locations
from ferryman.cli.system import Targets, load_system
from ferryman.errors import ConfigError


@app.command("docs")
def docs_command(
    ctx: typer.Context,
    services: Targets,
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="The directory to write into (made if missing)."),
    ],
    title: Annotated[
        str, typer.Option("--title", help="The title of the document and the page.")
    ] = "ferryman system",
    version: Annotated[
        str, typer.Option("--api-version", help="The version the AsyncAPI document states.")
    ] = "1.0.0",
    broker: BrokerUrl = None,
    registry: RegistryUrl = None,
    debug: Debug = False,
) -> None:
    """Write the services' AsyncAPI 3.0 document and an HTML page with their topology.

    Give every service of the system: the document has a channel per topic they use, an
    operation per service and topic (send or receive, with the reply for requests).
    """
    from ferryman.system.asyncapi import document
    from ferryman.system.topology import page, svg

    debug = debugging(ctx, debug)
    with reporting("docs", debug):
        set_locations(broker, registry, None)
        system = load_system("docs", services, debug)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot make the output directory {str(out)!r} ({exc.strerror}); name a "
                "directory you can write to with -o"
            ) from None
        if not out.is_dir():
            raise ConfigError(f"{str(out)!r} is not a directory; name a directory with -o")
        doc = document(system, title=title, version=version)
        files = {
            "asyncapi.json": json.dumps(doc, indent=2) + "\n",
            "topology.svg": svg(system) + "\n",
            "index.html": page(system, title),
        }
        for name, text in files.items():
            (out / name).write_text(text, encoding="utf-8")
    typer.echo(
        f"wrote {', '.join(str(out / n) for n in files)}: {len(system.services)} service(s), "
        f"{len(system.topics)} topic(s)",
        err=True,
    )
