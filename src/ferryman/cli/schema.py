"""``ferryman schema list|show|diff|check|register``: the registry's subjects, and the declared
models against it (whether each could be registered under its topic kind's rule, and why not)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from ferryman.cli.app import BrokerUrl, Debug, RegistryUrl, app, debugging, fail, reporting
from ferryman.cli.ops import Json, print_json
from ferryman.cli.system import Targets, load_system
from ferryman.errors import ConfigError, SchemaNotFound
from ferryman.schema.registry import Registry, Version

schema_app = typer.Typer(
    help="Schemas: the registry's subjects and versions, and the declared models against them.",
    no_args_is_help=True,
)
app.add_typer(schema_app, name="schema")

Subject = Annotated[str, typer.Argument(help="The subject, e.g. orders.placed-value.")]


def _registry(broker: str | None, registry: str | None) -> Registry:
    """The registry ``--registry`` names, else FERRYMAN_REGISTRY, else the one beside the broker."""
    from ferryman.config import resolve_locations
    from ferryman.schema.open import open_registry

    return open_registry(resolve_locations(broker, registry).registry)


def _version(text: str) -> Version:
    if text == "latest":
        return "latest"
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise ConfigError(f"version {text!r}: write a version number (1, 2, ...) or latest")


@schema_app.command("list")
def list_subjects(
    ctx: typer.Context,
    broker: BrokerUrl = None,
    registry: RegistryUrl = None,
    as_json: Json = False,
    debug: Debug = False,
) -> None:
    """Every subject: its latest version, that version's schema id, and its compatibility rule."""
    with reporting("schema list", debugging(ctx, debug)):
        reg = _registry(broker, registry)
        try:
            rows: list[dict[str, Any]] = []
            for subject in sorted(reg.subjects()):
                latest = reg.latest(subject)
                rows.append(
                    {
                        "subject": subject,
                        "versions": len(reg.versions(subject)),
                        "latest": latest.version,
                        "id": latest.schema_id,
                        "compatibility": reg.get_compatibility(subject),
                    }
                )
        finally:
            reg.close()
    if as_json:
        print_json(rows)
        return
    if not rows:
        typer.echo("The registry has no subjects.")
        return
    from rich.console import Console
    from rich.table import Column, Table

    widest = max(len(r["subject"]) for r in rows)
    table = Table(
        Column("subject", no_wrap=True, min_width=widest),
        "versions",
        "latest",
        "id",
        Column("compatibility", no_wrap=True),
    )
    for r in rows:
        table.add_row(
            r["subject"], str(r["versions"]), str(r["latest"]), str(r["id"]), r["compatibility"]
        )
    Console().print(table)


@schema_app.command()
def show(
    ctx: typer.Context,
    subject: Subject,
    version: Annotated[
        str, typer.Option("--version", "-v", help="A version number, or latest.")
    ] = "latest",
    broker: BrokerUrl = None,
    registry: RegistryUrl = None,
    as_json: Json = False,
    debug: Debug = False,
) -> None:
    """One version of a subject: its number, schema id, rule, and the schema itself."""
    with reporting("schema show", debugging(ctx, debug)):
        wanted = _version(version)
        reg = _registry(broker, registry)
        try:
            found = reg.get_version(subject, wanted)
            row: dict[str, Any] = {
                "subject": found.subject,
                "version": found.version,
                "versions": reg.versions(subject),
                "id": found.schema_id,
                "compatibility": reg.get_compatibility(subject),
                "schema": found.schema,
            }
        except SchemaNotFound as exc:
            fail("schema show", f"{exc}; `ferryman schema list` shows the subjects and versions")
        finally:
            reg.close()
    if as_json:
        print_json(row)
        return
    from rich.console import Console
    from rich.syntax import Syntax

    console = Console()
    console.print(
        f"[bold]{subject}[/] version {row['version']} of {len(row['versions'])}, "
        f"id {row['id']}, {row['compatibility']}",
        soft_wrap=True,
    )
    console.print(Syntax(json.dumps(row["schema"], indent=2), "json", background_color="default"))


@schema_app.command()
def diff(
    ctx: typer.Context,
    subject: Subject,
    old: Annotated[str, typer.Argument(help="The older version (a number, or latest).")],
    new: Annotated[str, typer.Argument(help="The newer version (a number, or latest).")],
    broker: BrokerUrl = None,
    registry: RegistryUrl = None,
    as_json: Json = False,
    debug: Debug = False,
) -> None:
    """Fields added, removed and changed between two versions, and whether each can read the
    other's data (BACKWARD: new reads old; FORWARD: old reads new)."""
    from ferryman.schema.compat import check_compatibility
    from ferryman.system.schemas import field_changes

    with reporting("schema diff", debugging(ctx, debug)):
        reg = _registry(broker, registry)
        try:
            a = reg.get_version(subject, _version(old))
            b = reg.get_version(subject, _version(new))
            rule = reg.get_compatibility(subject)
        except SchemaNotFound as exc:
            fail("schema diff", f"{exc}; `ferryman schema show {subject}` shows its versions")
        finally:
            reg.close()
        result: dict[str, Any] = {
            "subject": subject,
            "old": a.version,
            "new": b.version,
            "compatibility": rule,
            "changes": field_changes(a.schema, b.schema),
            "backward": check_compatibility(b.schema, [a.schema], "BACKWARD"),
            "forward": check_compatibility(b.schema, [a.schema], "FORWARD"),
        }
    if as_json:
        print_json(result)
        return
    from rich.console import Console

    console = Console()
    console.print(
        f"[bold]{subject}[/] version {a.version} -> {b.version} (rule {rule})", soft_wrap=True
    )
    colours = {"+": "green", "-": "red", "~": "yellow"}
    for line in result["changes"] or ["(the same fields)"]:
        console.print(f"  [{colours.get(line[0], 'default')}]{line}[/]", soft_wrap=True)
    for way, what in (("backward", "new reads old"), ("forward", "old reads new")):
        problems = result[way]
        mark = "[green]yes[/]" if not problems else "[red]no[/]"
        console.print(f"{way} ({what}): {mark}")
        for p in problems:
            console.print(f"    {p}", soft_wrap=True, markup=False)


def _checks(
    command: str, ctx: typer.Context, targets: list[str], where: tuple[Any, Any], debug: bool
) -> tuple[Registry, list[Any]]:
    from ferryman.cli.app import set_locations
    from ferryman.system.schemas import check_subject, declared_subjects

    broker, registry = where
    set_locations(broker, registry, None)
    system = load_system(command, targets, debugging(ctx, debug))
    reg = _registry(broker, registry)
    try:
        declared = declared_subjects(system)
        with _progress(len(declared), "checking") as advance:
            checks = []
            for d in declared:
                checks.append(check_subject(reg, d))
                advance()
        return reg, checks
    except BaseException:
        reg.close()
        raise


@contextmanager
def _progress(total: int, what: str) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr while a terminal watches (a registry over HTTP may be slow)."""
    import sys

    from rich.console import Console
    from rich.progress import Progress

    with Progress(
        console=Console(stderr=True), transient=True, disable=not sys.stderr.isatty()
    ) as progress:
        task = progress.add_task(what, total=total)
        yield lambda: progress.advance(task)


VERDICTS = {
    "new": "[green]new[/] (will be version 1)",
    "registered": "[green]registered[/]",
    "compatible": "[green]compatible[/]",
    "incompatible": "[red]incompatible[/]",
}


def _show_checks(checks: list[Any], as_json: bool) -> None:
    if as_json:
        print_json([c.as_json() for c in checks])
        return
    from rich.console import Console

    console = Console()
    for c in checks:
        d = c.declared
        verdict = VERDICTS[c.verdict]
        if c.verdict == "registered":
            verdict += f" as version {c.same_as}"
        elif c.verdict == "compatible":
            verdict += f" (would be version {max(c.versions) + 1})"
        console.print(
            f"{d.subject}  {d.model}  {d.compatibility}  {verdict}  [dim]({', '.join(d.services)})[/]",
            soft_wrap=True,
        )
        for reason in c.reasons:
            console.print(f"    {reason}", soft_wrap=True, markup=False)


@schema_app.command()
def check(
    ctx: typer.Context,
    services: Targets,
    broker: BrokerUrl = None,
    registry: RegistryUrl = None,
    as_json: Json = False,
    debug: Debug = False,
) -> None:
    """Before a deploy: whether each model the services declare is compatible with the
    registry under its topic kind's rule, with the reasons. Exit status 1 if one is not."""
    with reporting("schema check", debugging(ctx, debug)):
        reg, checks = _checks("schema check", ctx, services, (broker, registry), debug)
        reg.close()
    _show_checks(checks, as_json)
    bad = [c.declared.subject for c in checks if c.verdict == "incompatible"]
    if bad:
        fail(
            "schema check",
            f"{len(bad)} incompatible: {', '.join(bad)}; give the new fields defaults, keep the "
            "removed ones (with defaults), or move to a new topic",
        )


@schema_app.command()
def register(
    ctx: typer.Context,
    services: Targets,
    broker: BrokerUrl = None,
    registry: RegistryUrl = None,
    as_json: Json = False,
    debug: Debug = False,
) -> None:
    """Register the services' models (after `check`); nothing is registered if one is refused."""
    from ferryman.system.schemas import register_subject

    with reporting("schema register", debugging(ctx, debug)):
        reg, checks = _checks("schema register", ctx, services, (broker, registry), debug)
        try:
            bad = [c.declared.subject for c in checks if c.verdict == "incompatible"]
            if bad:
                _show_checks(checks, as_json)
                fail(
                    "schema register",
                    f"refused: {', '.join(bad)} would break their rule (reasons above); nothing "
                    "was registered",
                )
            out = []
            with _progress(len(checks), "registering") as advance:
                for c in checks:
                    schema_id = register_subject(reg, c.declared)
                    version = reg.lookup(c.declared.subject, c.declared.schema).version
                    out.append(
                        {
                            "subject": c.declared.subject,
                            "version": version,
                            "id": schema_id,
                            "new": c.verdict != "registered",
                        }
                    )
                    advance()
        finally:
            reg.close()
    if as_json:
        print_json(out)
        return
    for row in out:
        state = "registered" if row["new"] else "already registered"
        typer.echo(f"{row['subject']}: {state} as version {row['version']} (id {row['id']})")
