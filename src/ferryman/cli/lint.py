"""``ferryman lint module:svc ...``: the design rules of event-driven topics, checked on the
declared services (docs/lint.md); with ``--broker``/``--registry``, also against what they hold."""

from __future__ import annotations

import os
from contextlib import ExitStack
from typing import TYPE_CHECKING, Annotated

import typer

from ferryman.cli.app import BrokerUrl, Debug, RegistryUrl, app, debugging, reporting, set_locations
from ferryman.cli.ops import Json, print_json
from ferryman.cli.system import Targets, load_system
from ferryman.errors import ConfigError, UnknownTopic

if TYPE_CHECKING:
    from ferryman.system.lint import Context, Finding


@app.command("lint")
def lint_command(
    ctx: typer.Context,
    services: Targets,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit with status 1 on warnings too, not only errors.")
    ] = False,
    name_pattern: Annotated[
        str | None,
        typer.Option(
            "--name-pattern",
            help="The topic naming convention, a regular expression every topic name must match "
            "whole; default lowercase words joined by '.', '-' or '_'.",
            show_default=False,
        ),
    ] = None,
    broker: BrokerUrl = None,
    registry: RegistryUrl = None,
    as_json: Json = False,
    debug: Debug = False,
) -> None:
    """Check the services against the design rules of entity, event and request topics.

    Give every service of the system: some rules span services. Findings are errors (exit
    status 1) or warnings (status 1 with --strict). With --broker (or FERRYMAN_BROKER) the
    broker's topics are checked too; with --registry (or FERRYMAN_REGISTRY) the registry's
    schemas.
    """
    import re

    from ferryman.system.lint import DEFAULT_NAME_PATTERN, Context, lint

    debug = debugging(ctx, debug)
    with reporting("lint", debug), ExitStack() as stack:
        pattern = name_pattern or DEFAULT_NAME_PATTERN
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(
                f"--name-pattern {pattern!r} is not a regular expression ({exc}); write one, "
                "e.g. '[a-z]+(\\.[a-z]+)+'"
            ) from None
        set_locations(broker, registry, None)
        system = load_system("lint", services, debug)
        context = Context(name_pattern=pattern)
        if broker or os.environ.get("FERRYMAN_BROKER"):
            context = _with_broker(stack, context, broker)
        if registry or os.environ.get("FERRYMAN_REGISTRY"):
            from ferryman.config import resolve_locations
            from ferryman.schema.open import open_registry

            reg = open_registry(resolve_locations(broker, registry).registry)
            stack.callback(reg.close)
            context = Context(context.name_pattern, reg, context.cleanup_policy)
        findings = lint(system, context)
    errors = sum(f.severity == "error" for f in findings)
    warnings = len(findings) - errors
    if as_json:
        print_json([f.as_json() for f in findings])
    else:
        _show(findings, len(system.services), len(system.topics))
    if errors or (strict and warnings):
        raise typer.Exit(1)


def _with_broker(stack: ExitStack, context: Context, broker: str | None) -> Context:
    from ferryman.broker import open_broker
    from ferryman.config import broker_location
    from ferryman.system.lint import Context

    opened = open_broker(broker_location(broker))
    stack.callback(opened.close)
    admin = opened.admin()

    def cleanup_policy(topic: str) -> str | None:
        try:
            return admin.describe_topic(topic).config.get("cleanup.policy", "delete")
        except UnknownTopic:
            return None

    return Context(context.name_pattern, context.registry, cleanup_policy)


def _show(findings: list[Finding], services: int, topics: int) -> None:
    from rich.console import Console

    console = Console()
    colours = {"error": "red", "warning": "yellow"}
    for f in findings:
        console.print(
            f"[{colours[f.severity]}]{f.severity}[/] [bold]{f.rule}[/] {f.where}", soft_wrap=True
        )
        console.print(f"    {f.message}", soft_wrap=True, markup=False, highlight=False)
        console.print(f"    fix: {f.fix}", soft_wrap=True, markup=False, highlight=False)
    errors = sum(f.severity == "error" for f in findings)
    console.print(
        f"{services} service(s), {topics} topic(s): {errors} error(s), "
        f"{len(findings) - errors} warning(s)",
        highlight=False,
    )
