"""The ``ferryman`` Typer app and what its commands share: options, error reporting, locations.

An error a user can meet (a FerrymanError, a module that will not import) is one line on stderr
and exit status 1; ``--debug`` shows its traceback instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version as _dist_version
from typing import Annotated, NoReturn

import typer

from ferryman.errors import FerrymanError

app = typer.Typer(
    name="ferryman",
    help="Event-driven Python services over a message log (embedded SQLite broker or Kafka).",
    no_args_is_help=True,
    add_completion=False,
    # Locals may hold passwords (SASL, registry credentials); a traceback must not print them.
    pretty_exceptions_show_locals=False,
)

Debug = Annotated[
    bool, typer.Option("--debug", help="On an error, show its traceback rather than one line.")
]
BrokerUrl = Annotated[
    str | None,
    typer.Option(
        "--broker",
        help="embedded:PATH or kafka://host:9092[,host2:9092]; default $FERRYMAN_BROKER, "
        "else embedded:.ferryman/broker.db.",
        show_default=False,
    ),
]
RegistryUrl = Annotated[
    str | None,
    typer.Option(
        "--registry",
        help="embedded, embedded:PATH or an http(s):// schema registry; default "
        "$FERRYMAN_REGISTRY, else embedded (beside the embedded broker's file).",
        show_default=False,
    ),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database",
        help="An SQLAlchemy URL; default $FERRYMAN_DATABASE, else SQLite under .ferryman/.",
        show_default=False,
    ),
]


def ferryman_version() -> str:
    """The installed distribution's version."""
    return _dist_version("ferryman")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(ferryman_version())
        raise typer.Exit()


@app.callback()
def ferryman(
    ctx: typer.Context,
    debug: Debug = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print ferryman's version and exit.", callback=_print_version
        ),
    ] = False,
) -> None:
    """Event-driven Python services over a message log (embedded SQLite broker or Kafka)."""
    ctx.meta["ferryman.debug"] = debug


def debugging(ctx: typer.Context, debug: bool) -> bool:
    """Whether ``--debug`` was given to the command or to ``ferryman`` itself."""
    return debug or bool(ctx.meta.get("ferryman.debug"))


def fail(command: str, message: str, status: int = 1) -> NoReturn:
    """Print ``ferryman <command>: <message>`` on stderr and exit with ``status``.

    Status 2, as for any bad argument, when what was typed is wrong; 1 when what it ran failed.
    """
    typer.echo(f"ferryman {command}: {message}", err=True)
    raise typer.Exit(status)


@contextmanager
def reporting(command: str, debug: bool) -> Iterator[None]:
    """Turn a FerrymanError into one line on stderr; ``debug`` (see ``debugging``) re-raises it."""
    try:
        yield
    except FerrymanError as exc:
        if debug:
            raise
        fail(command, f"{type(exc).__name__}: {exc} (--debug shows the traceback)")


def set_locations(broker: str | None, registry: str | None, database: str | None) -> None:
    """Hand ``--broker``/``--registry``/``--database`` to the services this process creates.

    Services are created when their module is imported, from arguments in code, else from
    ``FERRYMAN_*``; so the options set those variables (a location written in code still wins).
    """
    for var, value in (
        ("FERRYMAN_BROKER", broker),
        ("FERRYMAN_REGISTRY", registry),
        ("FERRYMAN_DATABASE", database),
    ):
        if value is not None:
            os.environ[var] = value
