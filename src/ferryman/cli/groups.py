"""``ferryman groups list|describe|reset``: consumer groups, their members and lag, and moving
their committed offsets (only while no member is live)."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer

from ferryman.cli.app import BrokerUrl, Debug, RegistryUrl, app, debugging, fail, reporting
from ferryman.cli.ops import Json, admin_of, offsets_at, parse_position, print_json, read_range
from ferryman.errors import ConfigError, GroupBusy, UnknownTopic
from ferryman.records import TopicPartition

groups_app = typer.Typer(help="Consumer groups: members, lag, and resetting offsets.")
app.add_typer(groups_app, name="groups")

Group = Annotated[str, typer.Argument(help="The consumer group (a service's group).")]


@groups_app.command("list")
def list_groups(
    ctx: typer.Context,
    broker: BrokerUrl = None,
    registry: RegistryUrl = None,
    as_json: Json = False,
    debug: Debug = False,
) -> None:
    """List the consumer groups, with live members and total lag."""
    with reporting("groups list", debugging(ctx, debug)), admin_of(broker) as admin:
        rows: list[dict[str, Any]] = []
        for group in admin.list_groups():
            committed = admin.committed(group)
            lag = 0
            for topic in sorted({tp.topic for tp in committed}):
                try:
                    lag += sum(admin.group_lag(group, topic).values())
                except UnknownTopic:
                    continue  # deleted since the group read it
            rows.append(
                {
                    "group": group,
                    "members": len(admin.group_members(group)),
                    "topics": sorted({tp.topic for tp in committed}),
                    "lag": lag,
                }
            )
    if as_json:
        print_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("group", "members", "topics", "lag (records)")
    for row in rows:
        table.add_row(row["group"], str(row["members"]), ", ".join(row["topics"]), str(row["lag"]))
    Console().print(table)


@groups_app.command()
def describe(
    ctx: typer.Context,
    group: Group,
    broker: BrokerUrl = None,
    registry: RegistryUrl = None,
    as_json: Json = False,
    debug: Debug = False,
) -> None:
    """A group's members and assignments, and per partition its committed offset and lag."""
    from ferryman.broker import open_broker
    from ferryman.config import broker_location

    with reporting("groups describe", debugging(ctx, debug)):
        opened = open_broker(broker_location(broker))
        try:
            data = _describe(opened, group)
        finally:
            opened.close()
    if as_json:
        print_json(data)
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{group}[/]: {len(data['members'])} live member(s)")
    for m in data["members"]:
        console.print(f"  {m['member']} {m['client']}: {', '.join(m['assignment']) or '-'}")
    table = Table("topic", "partition", "committed", "latest", "lag", "lag (s)", "member")
    for p in data["partitions"]:
        seconds = "" if p["lag_seconds"] is None else f"{p['lag_seconds']:.1f}"
        table.add_row(
            p["topic"],
            str(p["partition"]),
            "-" if p["committed"] is None else str(p["committed"]),
            str(p["latest"]),
            str(p["lag"]),
            seconds,
            p["member"] or "",
        )
    console.print(table)


def _describe(broker: Any, group: str) -> dict[str, Any]:
    admin = broker.admin()
    members = admin.group_members(group)
    committed = admin.committed(group)
    owner = {tp: m.member_id for m in members for tp in m.assignment}
    topics = sorted({tp.topic for tp in committed} | {tp.topic for tp in owner})
    if not topics and not members:
        raise ConfigError(
            f"group {group!r} has no members and no committed offsets; "
            "`ferryman groups list` shows the groups there are"
        )
    partitions = []
    for topic in topics:
        try:
            bounds = admin.offsets(topic)
        except UnknownTopic:
            continue
        for p, b in sorted(bounds.items()):
            tp = TopicPartition(topic, p)
            done = committed.get(tp)
            lag = max(b.latest - max(b.earliest if done is None else done, b.earliest), 0)
            partitions.append(
                {
                    "topic": topic,
                    "partition": p,
                    "committed": done,
                    "earliest": b.earliest,
                    "latest": b.latest,
                    "lag": lag,
                    "lag_seconds": _lag_seconds(broker, tp, done, b.latest) if lag else 0.0,
                    "member": owner.get(tp),
                }
            )
    return {
        "group": group,
        "members": [
            {
                "member": m.member_id,
                "client": m.client,
                "assignment": sorted(str(tp) for tp in m.assignment),
            }
            for m in members
        ],
        "partitions": partitions,
    }


def _lag_seconds(
    broker: Any, tp: TopicPartition, committed: int | None, latest: int
) -> float | None:
    """How long ago the oldest unconsumed record happened (None where it cannot be read)."""
    if committed is None:
        return None
    for record in read_range(broker, {tp: (committed, latest)}):
        return max(time.time() - record.timestamp / 1000, 0.0)
    return None


@groups_app.command()
def reset(
    ctx: typer.Context,
    group: Group,
    topic: Annotated[str, typer.Option("--topic", help="The topic whose offsets to reset.")],
    to: Annotated[
        str,
        typer.Option("--to", help="earliest, latest, an offset, or an ISO-8601 time."),
    ],
    partition: Annotated[
        int | None, typer.Option("--partition", "-p", help="Only this partition.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the new offsets; change nothing.")
    ] = False,
    broker: BrokerUrl = None,
    registry: RegistryUrl = None,
    as_json: Json = False,
    debug: Debug = False,
) -> None:
    """Move a group's committed offsets on a topic. Refused while the group has live members."""
    from ferryman.broker import open_broker
    from ferryman.config import broker_location

    with reporting("groups reset", debugging(ctx, debug)):
        position = parse_position(to)
        opened = open_broker(broker_location(broker))
        try:
            admin = opened.admin()
            live = admin.group_members(group)
            if live and not dry_run:
                raise GroupBusy(
                    f"group {group!r} has {len(live)} live member(s); stop its consumers "
                    "(every process of the service) and reset again"
                )
            bounds = admin.offsets(topic)
            parts = sorted(bounds) if partition is None else [partition]
            if partition is not None and partition not in bounds:
                fail("groups reset", f"topic {topic!r} has no partition {partition}", 2)
            before = admin.committed(group, topic)
            new = offsets_at(opened, topic, parts, position)
            if not dry_run:
                admin.reset_offsets(group, new)
        finally:
            opened.close()
    rows = [
        {"topic": tp.topic, "partition": tp.partition, "from": before.get(tp), "to": offset}
        for tp, offset in sorted(new.items(), key=lambda i: i[0].partition)
    ]
    if as_json:
        print_json({"group": group, "dry_run": dry_run, "offsets": rows})
        return
    for row in rows:
        was = "-" if row["from"] is None else row["from"]
        typer.echo(f"{row['topic']}[{row['partition']}]: {was} -> {row['to']}")
    typer.echo(
        "dry run: nothing changed" if dry_run else f"reset {len(rows)} partition(s) of {group}",
        err=True,
    )
    if live and dry_run:
        typer.echo(f"note: {len(live)} member(s) are live; a reset would be refused", err=True)
    sys.stdout.flush()
