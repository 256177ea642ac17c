"""``ferryman demo``: four services on an embedded broker in a temporary directory."""

from __future__ import annotations

from ferryman.cli.app import app


@app.command()
def demo() -> None:
    """Run a small system of services (entities, events, requests) and print what flows."""
    from ferryman.demo.run import main

    main()
