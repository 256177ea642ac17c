"""The ``ferryman`` command. Each group of subcommands lives in its own module."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="ferryman",
    help="Event-driven Python services over a message log (embedded SQLite broker or Kafka).",
    no_args_is_help=True,
    add_completion=False,
)


def main() -> None:
    """Console-script entry point."""
    _register_commands()
    app()


def _register_commands() -> None:
    # Imported here so that `import ferryman.cli` stays cheap and each module adds its own commands.
    from ferryman.cli import commands  # noqa: F401
