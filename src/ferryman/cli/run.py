"""``ferryman run module:service [...]``: run services until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from typing import Annotated

import typer

from ferryman.cli import app


def load_service(target: str) -> object:
    """The object named by ``module:attribute`` (attribute may be dotted)."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise typer.BadParameter(
            f"{target!r}: name a service as module:attribute, e.g. myapp.services:orders"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`, find the project's own modules
    try:
        obj: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise typer.BadParameter(f"{target!r}: cannot import {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise typer.BadParameter(
                f"{target!r}: module {module_name!r} has no attribute {attr!r}"
            ) from None
    return obj


@app.command()
def run(
    services: Annotated[list[str], typer.Argument(help="Services to run, as module:attribute.")],
) -> None:
    """Run one or more services until SIGTERM or SIGINT, then stop them cleanly."""
    from ferryman.errors import FerrymanError
    from ferryman.runtime.runner import run_services
    from ferryman.runtime.service import Service

    loaded: list[Service] = []
    for target in services:
        obj = load_service(target)
        if not isinstance(obj, Service):
            raise typer.BadParameter(
                f"{target!r} is a {type(obj).__name__}, not a ferryman Service"
            )
        loaded.append(obj)
    try:
        asyncio.run(run_services(loaded))
    except FerrymanError as exc:
        typer.echo(f"ferryman run: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from exc
