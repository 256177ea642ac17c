"""``ferryman topics list|describe|plan|apply``: the broker's topics, and bringing them to what
the services declare (a plan first, then apply after confirmation; unsafe changes refused)."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any

import typer

from ferryman.cli.app import BrokerUrl, Debug, RegistryUrl, app, debugging, fail, reporting
from ferryman.cli.ops import Json, admin_of, operating, print_json
from ferryman.errors import SchemaNotFound, UnknownTopic
from ferryman.records import TopicInfo, TopicSpec

topics_app = typer.Typer(
    help="The broker's topics; plan and apply the topics services declare. "
    "Plain `ferryman topics` is `ferryman topics list`.",
    invoke_without_command=True,
)
app.add_typer(topics_app, name="topics")

ShowAll = Annotated[
    bool, typer.Option("--all", help="Show every setting, the broker's defaults too.")
]
Services = Annotated[list[str], typer.Argument(help="Services as module:attribute.")]


@topics_app.callback()
def topics(
    ctx: typer.Context,
    broker: BrokerUrl = None,
    registry: RegistryUrl = None,
    show_all: ShowAll = False,
    as_json: Json = False,
    debug: Debug = False,
) -> None:
    """List the broker's topics: partitions, records, and the settings made on each topic."""
    if ctx.invoked_subcommand is None:
        list_topics(ctx, broker, registry, show_all, as_json, debug)


@topics_app.command("list")
def list_topics(
    ctx: typer.Context,
    broker: BrokerUrl = None,
    registry: RegistryUrl = None,
    show_all: ShowAll = False,
    as_json: Json = False,
    debug: Debug = False,
) -> None:
    """List the broker's topics: partitions, records, and the settings made on each topic."""
    from ferryman.broker import open_broker
    from ferryman.config import broker_location

    with reporting("topics", debugging(ctx, debug)):
        rows = _describe(open_broker(broker_location(broker)), show_all)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    elif _on_terminal() and _fits(rows):
        _print_table(rows)
    else:
        # Piped, or names too long for the table: whole names, one tab-separated line per topic.
        typer.echo("topic\tpartitions\trecords\tconfig")
        for row in rows:
            typer.echo(
                f"{row['topic']}\t{row['partitions']}\t{row['records']}\t{_settings(row['config'])}"
            )


@topics_app.command()
def describe(
    ctx: typer.Context,
    topic: Annotated[str, typer.Argument(help="The topic.")],
    broker: BrokerUrl = None,
    registry: RegistryUrl = None,
    show_all: ShowAll = False,
    as_json: Json = False,
    debug: Debug = False,
) -> None:
    """One topic: offsets per partition, its settings, and its key and value subjects."""
    with reporting("topics describe", debugging(ctx, debug)), operating(broker, registry) as op:
        admin = op.broker.admin()
        info = admin.describe_topic(topic)
        offsets = admin.offsets(topic)
        subjects: dict[str, Any] = {}
        for part in ("key", "value"):
            try:
                latest = op.registry.latest(f"{topic}-{part}")
                subjects[part] = {
                    "subject": latest.subject,
                    "version": latest.version,
                    "id": latest.schema_id,
                }
            except SchemaNotFound:
                subjects[part] = None
    config = {k: v for k, v in sorted(info.config.items()) if show_all or k not in info.defaults}
    partitions = [
        {"partition": p, "earliest": o.earliest, "latest": o.latest}
        for p, o in sorted(offsets.items())
    ]
    row = {
        "topic": topic,
        "partitions": partitions,
        "config": config,
        "subjects": subjects,
    }
    if as_json:
        print_json(row)
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{topic}[/]  {info.partitions} partition(s)")
    table = Table("partition", "earliest", "latest", "records (latest-earliest)")
    for p in partitions:
        table.add_row(
            str(p["partition"]),
            str(p["earliest"]),
            str(p["latest"]),
            str(p["latest"] - p["earliest"]),
        )
    console.print(table)
    console.print(f"config: {_settings(config) or '(broker defaults)'}", soft_wrap=True)
    for part, found in subjects.items():
        text = f"{found['subject']} v{found['version']} (id {found['id']})" if found else "none"
        console.print(f"{part} subject: {text}", soft_wrap=True)


# -- plan and apply ------------------------------------------------------------------------


@dataclass
class Change:
    """One difference between a declared topic and the broker."""

    topic: str
    action: str
    """create, alter, or refused."""
    details: list[str] = field(default_factory=list)
    partitions: int | None = None
    config: dict[str, str] = field(default_factory=dict)


def declared_specs(targets: list[str], debug: bool) -> list[TopicSpec]:
    """The topics the services named by ``targets`` declare, one spec per name."""
    from ferryman.cli.run import load_service
    from ferryman.service.core import Service

    specs: dict[str, TopicSpec] = {}
    for target in targets:
        obj = load_service(target, debug)
        if not isinstance(obj, Service):
            fail("topics", f"{target!r} is a {type(obj).__name__}, not a ferryman Service", 2)
        for spec in obj.topic_specs():
            specs.setdefault(spec.name, spec)
    return [specs[name] for name in sorted(specs)]


def plan_changes(admin: Any, specs: list[TopicSpec]) -> list[Change]:
    """What it takes to bring the broker to ``specs``; unsafe changes come back as refused."""
    changes = []
    for spec in specs:
        try:
            info: TopicInfo = admin.describe_topic(spec.name)
        except UnknownTopic:
            changes.append(
                Change(
                    spec.name,
                    "create",
                    [f"{spec.partitions} partition(s), {_settings(dict(spec.config))}"],
                    spec.partitions,
                    dict(spec.config),
                )
            )
            continue
        change = _compare(spec, info)
        if change is not None:
            changes.append(change)
    return changes


def _compare(spec: TopicSpec, info: TopicInfo) -> Change | None:
    details, refused = [], []
    config = {}
    for key, want in sorted(spec.config.items()):
        have = info.config.get(key)
        if have == want:
            continue
        if key == "cleanup.policy" and "compact" in f"{have},{want}":
            refused.append(
                f"cleanup.policy is {have}, declared {want}: changing the cleanup policy of an "
                "entity (compacted) topic would delete or keep records its readers rely on; "
                "declare the topic as it is, or move to a new topic"
            )
            continue
        details.append(f"{key}: {have} -> {want}")
        config[key] = want
    partitions = None
    if spec.partitions < info.partitions:
        refused.append(
            f"it has {info.partitions} partitions, declared {spec.partitions}: a topic cannot "
            f"lose partitions (their records would go); declare partitions={info.partitions}"
        )
    elif spec.partitions > info.partitions:
        partitions = spec.partitions
        details.append(
            f"partitions: {info.partitions} -> {spec.partitions} (keys move to other "
            "partitions: per-key order holds only for records produced after the change)"
        )
    if refused:
        return Change(spec.name, "refused", refused)
    if details:
        return Change(spec.name, "alter", details, partitions, config)
    return None


def _plan(
    ctx: typer.Context,
    command: str,
    services: list[str],
    where: tuple[str | None, str | None],
    debug: bool,
) -> list[Change]:
    from ferryman.cli.app import set_locations

    broker, registry = where
    with reporting(command, debugging(ctx, debug)):
        set_locations(broker, registry, None)
        specs = declared_specs(services, debugging(ctx, debug))
        with admin_of(broker) as admin:
            return plan_changes(admin, specs)


def _show(changes: list[Change], as_json: bool) -> None:
    if as_json:
        print_json([asdict(c) for c in changes])
        return
    if not changes:
        typer.echo("The broker has every declared topic as declared: nothing to do.")
        return
    from rich.console import Console

    console = Console()
    marks = {
        "create": "[green]+ create[/]",
        "alter": "[yellow]~ alter[/]",
        "refused": "[red]! refused[/]",
    }
    for c in changes:
        console.print(f"{marks[c.action]} {c.topic}", soft_wrap=True)
        for line in c.details:
            console.print(f"    {line}", soft_wrap=True, markup=False)


@topics_app.command()
def plan(
    ctx: typer.Context,
    services: Services,
    broker: BrokerUrl = None,
    registry: RegistryUrl = None,
    as_json: Json = False,
    debug: Debug = False,
) -> None:
    """Show what `topics apply` would change to bring the broker to the declared topics."""
    changes = _plan(ctx, "topics plan", services, (broker, registry), debug)
    _show(changes, as_json)


@topics_app.command()
def apply(
    ctx: typer.Context,
    services: Services,
    broker: BrokerUrl = None,
    registry: RegistryUrl = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking.")] = False,
    as_json: Json = False,
    debug: Debug = False,
) -> None:
    """Apply the plan: create missing topics, grow partitions, set settings (after a yes)."""
    changes = _plan(ctx, "topics apply", services, (broker, registry), debug)
    _show(changes, as_json)
    refused = [c.topic for c in changes if c.action == "refused"]
    if refused:
        fail(
            "topics apply",
            f"refused: {', '.join(refused)} cannot be changed safely (reasons above); nothing "
            "was applied. Change the declarations and plan again",
        )
    if not changes:
        return
    if not yes:
        if not sys.stdin.isatty():
            fail("topics apply", "not confirmed: pass --yes to apply without a terminal", 2)
        if not typer.confirm(f"Apply {len(changes)} change(s)?"):
            fail("topics apply", "not applied", 1)
    from rich.progress import Progress

    with (
        reporting("topics apply", debugging(ctx, debug)),
        admin_of(broker) as admin,
        Progress(transient=True, disable=not sys.stderr.isatty()) as progress,
    ):
        task = progress.add_task("applying", total=len(changes))
        for c in changes:
            if c.action == "create":
                admin.create_topic(TopicSpec(c.topic, c.partitions or 1, c.config))
            else:
                admin.alter_topic(c.topic, partitions=c.partitions, config=c.config)
            progress.advance(task)
    typer.echo(f"applied {len(changes)} change(s)", err=True)


# -- list's table ---------------------------------------------------------------------------


def _on_terminal() -> bool:
    return sys.stdout.isatty()


def _fits(rows: list[dict[str, Any]]) -> bool:
    """Whether the table has room for whole names (Rich cuts a row at the terminal's edge)."""
    widest = max((len(row["topic"]) for row in rows), default=0)
    return widest + 40 <= shutil.get_terminal_size().columns


def _describe(broker: Any, show_all: bool) -> list[dict[str, Any]]:
    """One dict per topic: name, partitions, records (latest - earliest) and its settings."""
    try:
        admin = broker.admin()
        rows = []
        for name in admin.list_topics():
            try:
                info = admin.describe_topic(name)
                offsets = admin.offsets(name)
            except UnknownTopic:
                continue  # deleted between the listing and its description: not there any more
            config = {
                k: v for k, v in sorted(info.config.items()) if show_all or k not in info.defaults
            }
            rows.append(
                {
                    "topic": name,
                    "partitions": info.partitions,
                    "records": sum(o.latest - o.earliest for o in offsets.values()),
                    "config": config,
                }
            )
        return rows
    finally:
        broker.close()


def _settings(config: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items())


def _print_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Column, Table

    # The name is what people copy: never cut or wrapped, even on a narrow terminal.
    widest = max((len(row["topic"]) for row in rows), default=5)
    topic = Column("topic", no_wrap=True, overflow="ignore", min_width=widest)
    table = Table(topic, "partitions", "records (latest-earliest)", "config")
    for row in rows:
        table.add_row(
            row["topic"], str(row["partitions"]), str(row["records"]), _settings(row["config"])
        )
    Console().print(table)
