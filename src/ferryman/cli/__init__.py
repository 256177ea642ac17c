"""The ``ferryman`` command. The app lives in ``cli/app.py``; each group of subcommands in its
own module, which adds itself to the app when ``cli/commands.py`` imports it.
"""

from __future__ import annotations

from ferryman.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    _register_commands()
    app()


def _register_commands() -> None:
    # Imported here so that `import ferryman.cli` stays cheap and each module adds its own commands.
    from ferryman.cli import commands  # noqa: F401
