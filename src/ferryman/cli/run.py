"""``ferryman run module:service [...]``: run services until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import importlib
import os
import re
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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

HttpPort = Annotated[
    int | None,
    typer.Option(
        "--http-port",
        help="Serve /metrics, /health/live and /health/ready on this port (0: any free port).",
    ),
]
HttpHost = Annotated[
    str, typer.Option("--http-host", help="Address the HTTP endpoints bind (default loopback).")
]
LogFormatOption = Annotated[
    str, typer.Option("--log-format", help="Log lines as text or json (one object a line).")
]

if TYPE_CHECKING:
    from ferryman.service.core import Service


def load_service(target: str, debug: bool = False) -> object:
    """The object named by ``module:attribute`` (attribute may be dotted).

    A target that names nothing is one line on stderr and exit status 2; a module that fails
    while importing, one line and status 1 (the traceback with ``debug``).
    """
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        fail(
            "run", f"{target!r}: name a service as module:attribute, e.g. myapp.services:orders", 2
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`, find the project's own modules
    try:
        obj: object = importlib.import_module(module_name)
    except Exception as exc:
        if debug:
            raise
        # The target module (or a parent package) itself is missing, not something it imports.
        if isinstance(exc, ModuleNotFoundError) and f"{module_name}.".startswith(f"{exc.name}."):
            fail(
                "run",
                f"{target!r}: cannot import {module_name!r}: no such module in {os.getcwd()} or "
                "on the path; run ferryman from your project's directory, or check the module path",
                2,
            )
        fail(
            "run",
            f"{target!r}: importing {module_name!r} failed{_where(exc)}: {type(exc).__name__}: "
            f"{exc} (--debug shows the traceback)",
        )
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            fail("run", f"{target!r}: module {module_name!r} has no attribute {attr!r}", 2)
    return obj


def load_one_service(command: str, target: str, debug: bool = False) -> Service:
    """The Service ``target`` (``module:attribute``) names; anything else is one line on
    stderr and exit status 2 (the commands that act on one service: relay, lag, ...)."""
    from ferryman.service.core import Service

    svc = load_service(target, debug)
    if not isinstance(svc, Service):
        fail(command, f"{target!r} is a {type(svc).__name__}, not a ferryman Service", 2)
    return svc


def _where(exc: BaseException) -> str:
    """`` at FILE:LINE``: the innermost line of the user's code that raised ``exc``."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" at {exc.filename}:{exc.lineno}"
    ours = str(Path(__file__).parents[1])  # ferryman's own frames say nothing of the user's code
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith((ours, "<frozen")) and f.filename != __file__
    ]
    # Prefer the project's own files (under the current directory) to the libraries they call.
    mine = [f for f in frames if f.filename.startswith(os.getcwd() + os.sep)] or frames
    return f" at {mine[-1].filename}:{mine[-1].lineno}" if mine else ""


def summary(service: Service) -> str:
    """What a service is about to do: where, as which group, the topics it handles and produces."""
    from ferryman.topics import RESERVED_SUFFIXES

    names = list(dict.fromkeys(spec.name for spec in service.topic_specs()))
    handled = [n for n in names if not n.endswith(RESERVED_SUFFIXES)]
    produced = [n for n in names if n.endswith(RESERVED_SUFFIXES)]
    where = service.locations
    return "\n".join(
        [
            f"ferryman run: service {service.name!r}, group {service.group!r}",
            f"  broker    {where.broker}",
            f"  registry  {without_password(where.registry)}",
            f"  handles   {', '.join(handled) or '(nothing: no handlers)'}",
            f"  produces  {', '.join(produced) or '(no dead letters or replies)'}",
        ]
    )


def without_password(url: str) -> str:
    """``url`` with the user part (``user:password@``) of its authority masked, for printing."""
    return re.sub(r"^([a-z+]+://)[^/@]*@", r"\1***@", url)


@app.command()
def run(
    ctx: typer.Context,
    services: Annotated[list[str], typer.Argument(help="Services to run, as module:attribute.")],
    broker: BrokerUrl = None,
    registry: RegistryUrl = None,
    database: DatabaseUrl = None,
    http_port: HttpPort = None,
    http_host: HttpHost = "127.0.0.1",
    log_format: LogFormatOption = "text",
    debug: Debug = False,
) -> None:
    """Run one or more services until SIGTERM or SIGINT, then stop them cleanly.

    --broker, --registry and --database apply to the services that do not name their own in code.
    With --http-port, /metrics, /health/live and /health/ready of every service are served.
    """
    from ferryman.config import broker_location
    from ferryman.observability.logs import configure_logging
    from ferryman.service.core import Service

    debug = debugging(ctx, debug)
    if log_format not in ("text", "json"):
        fail("run", f"--log-format {log_format!r}: write json or text", 2)
    if http_port is not None and not 0 <= http_port <= 65535:
        fail("run", f"--http-port {http_port}: write a port from 1 to 65535 (0: any free port)", 2)
    with reporting("run", debug):
        if broker is not None:
            broker_location(broker)  # a bad URL is reported as such, before any import
        set_locations(broker, registry, database)
        loaded: list[Service] = []
        for target in services:
            obj = load_service(target, debug)
            if not isinstance(obj, Service):
                fail("run", f"{target!r} is a {type(obj).__name__}, not a ferryman Service", 2)
            loaded.append(obj)
        for svc in loaded:
            typer.echo(summary(svc), err=True)
        configure_logging(
            "json" if log_format == "json" else "text",
            service=loaded[0].name if len(loaded) == 1 else None,
        )
        asyncio.run(serve(loaded, http_port, http_host))


async def serve(services: list[Service], http_port: int | None, http_host: str) -> None:
    """Run ``services``, with their HTTP endpoints on ``http_host:http_port`` when given."""
    from ferryman.observability.http import HttpServer
    from ferryman.service.running import run_services

    server = None
    if http_port is not None:
        server = HttpServer(services, http_port, http_host, asyncio.get_running_loop())
        try:
            await asyncio.to_thread(server.start)
        except OSError as exc:
            fail("run", str(exc), 2)
        typer.echo(
            f"ferryman run: http://{http_host}:{server.bound_port}/metrics, /health/live, "
            "/health/ready",
            err=True,
        )
    try:
        await run_services(services)
    finally:
        if server is not None:
            await asyncio.to_thread(server.stop)
