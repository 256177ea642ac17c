"""What ``schema check|register``, ``lint`` and ``docs`` share: the services named on the
command line, loaded into one system view."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

import typer

from ferryman.cli.app import fail
from ferryman.cli.run import load_service
from ferryman.service.core import Service
from ferryman.system.view import System

Targets = Annotated[
    list[str],
    typer.Argument(
        help="Services as module:attribute (a Service, or a list of them); give every service "
        "of the system to see it whole.",
        show_default=False,
    ),
]


def load_system(command: str, targets: list[str], debug: bool) -> System:
    """The services ``targets`` name, as one System; a target that is not a service is one line."""
    services: list[Service] = []
    for target in targets:
        obj = load_service(target, debug)
        found = _services_in(obj)
        if found is None:
            fail(
                command,
                f"{target!r} is a {type(obj).__name__}, not a ferryman Service (or a list of "
                "them); name a Service, e.g. myapp.services:orders",
                2,
            )
        services.extend(found)
    return System.of(services)


def _services_in(obj: object) -> list[Service] | None:
    if isinstance(obj, Service):
        return [obj]
    items = getattr(obj, "services", obj)
    if isinstance(items, Iterable) and not isinstance(items, str | bytes | dict):
        listed = list(items)
        if listed and all(isinstance(s, Service) for s in listed):
            return listed
    return None
