"""The design rules of event-driven topics, checked on the declared system.

Each rule looks at the whole system (every service given), so rules that span services (two
producers of one topic, a consumer reading a field its producer dropped, a shared consumer group)
are found when the services are linted together. docs/lint.md gives each rule's reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

from ferryman.errors import SchemaNotFound
from ferryman.schema.models import avro_schema
from ferryman.schema.registry import Registry
from ferryman.system.view import System, TopicView, Use
from ferryman.topics import EntityTopic, EventTopic, model_fields

Severity = Literal["error", "warning"]

DEFAULT_NAME_PATTERN = r"[a-z][a-z0-9]*([._-][a-z0-9]+)*"
"""Lowercase words joined by '.', '-' or '_' (``orders.placed``, ``billing.invoice-paid``)."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One broken rule: its id, how bad, where (a topic or a service), what, and the fix."""

    rule: str
    severity: Severity
    where: str
    message: str
    fix: str

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Context:
    """What the rules may consult besides the declarations."""

    name_pattern: str = DEFAULT_NAME_PATTERN
    registry: Registry | None = None
    cleanup_policy: Callable[[str], str | None] | None = None
    """The broker's cleanup.policy of a topic (None if it does not exist); None: no broker."""


Rule = Callable[[System, Context], Iterator[Finding]]
RULES: dict[str, tuple[Severity, str]] = {}
_CHECKS: list[Rule] = []


def rule(rule_id: str, severity: Severity, summary: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        RULES[rule_id] = (severity, summary)
        _CHECKS.append(fn)
        return fn

    return register


def lint(system: System, context: Context | None = None) -> list[Finding]:
    """Every finding of every rule on ``system``, errors first, then by topic or service."""
    ctx = context or Context()
    found = [f for check in _CHECKS for f in check(system, ctx)]
    return sorted(found, key=lambda f: (f.severity != "error", f.where, f.rule))


def _services(uses: Any) -> list[str]:
    return list(dict.fromkeys(u.service for u in uses))


def _topic(view: TopicView) -> str:
    return f"topic {view.name}"


@rule("entity-not-compacted", "error", "an entity topic that is not compacted")
def entity_not_compacted(system: System, ctx: Context) -> Iterator[Finding]:
    for view in system.topics.values():
        kinds = {u.service: u.topic for u in view.uses}
        entity = [s for s, t in kinds.items() if isinstance(t, EntityTopic)]
        other = [s for s, t in kinds.items() if not isinstance(t, EntityTopic)]
        if entity and other:
            yield Finding(
                "entity-not-compacted",
                "error",
                _topic(view),
                f"{', '.join(entity)} declare(s) it an entity topic (compacted) but "
                f"{', '.join(other)} declare(s) it another kind (deleted by retention)",
                "declare the topic once, as an EntityTopic, and import that declaration in "
                "every service",
            )
        if entity and ctx.cleanup_policy is not None:
            policy = ctx.cleanup_policy(view.name)
            if policy is not None and "compact" not in policy:
                yield Finding(
                    "entity-not-compacted",
                    "error",
                    _topic(view),
                    f"the broker's topic has cleanup.policy={policy}: old states are deleted by "
                    "retention, so a new consumer cannot rebuild the current state",
                    "recreate it compacted (move the data to a new compacted topic); "
                    "`ferryman topics plan` refuses to change it in place",
                )


@rule("entity-key-not-in-model", "error", "an entity topic whose key is not part of its model")
def entity_key_not_in_model(system: System, ctx: Context) -> Iterator[Finding]:
    for view in system.topics.values():
        owner = view.topic
        if not isinstance(owner, EntityTopic):
            continue
        for use in view.uses:
            topic = use.topic
            if not isinstance(topic, EntityTopic) or topic is owner:
                continue
            fields = model_fields(topic.model)
            if topic.key != owner.key or owner.key not in fields:
                yield Finding(
                    "entity-key-not-in-model",
                    "error",
                    _topic(view),
                    f"{view.owner_use.service} keys it by {owner.model.__name__}.{owner.key}, "
                    f"but {use.service} declares key={topic.key!r} on {topic.model.__name__} "
                    f"(fields: {', '.join(fields)})",
                    f"key every declaration by the entity's id, {owner.key!r}, a field of the "
                    "model: import the owner's declaration",
                )


@rule("several-producers", "error", "two services producing to one entity or event topic")
def several_producers(system: System, ctx: Context) -> Iterator[Finding]:
    for view in system.topics.values():
        if view.kind not in ("entity", "event"):
            continue
        producers = _services(view.producers)
        if len(producers) > 1:
            yield Finding(
                "several-producers",
                "error",
                _topic(view),
                f"{len(producers)} services produce to this {view.kind} topic: "
                f"{', '.join(producers)}; its schema and its facts have no single owner",
                f"let one service own it ({producers[0]}?); the others send it a request, or "
                "emit their own event topic that the owner consumes",
            )


@rule("several-responders", "error", "a request topic with several responder services")
def several_responders(system: System, ctx: Context) -> Iterator[Finding]:
    for view in system.topics.values():
        responders = _services(view.responders)
        if view.kind == "request" and len(responders) > 1:
            yield Finding(
                "several-responders",
                "error",
                _topic(view),
                f"{', '.join(responders)} all answer it: each request is answered by whichever "
                "group's member reads it first, and the requester may get two replies",
                "one service owns a request topic and answers it; give the others topics of "
                "their own",
            )


@rule("request-without-reply", "error", "a request topic nobody replies to")
def request_without_reply(system: System, ctx: Context) -> Iterator[Finding]:
    for view in system.topics.values():
        if view.kind != "request":
            continue
        handled = [u.service for u in view.consumers if u.role != "responds"]
        if handled:
            yield Finding(
                "request-without-reply",
                "error",
                _topic(view),
                f"{', '.join(dict.fromkeys(handled))} handle(s) it with @on, which sends no "
                "reply: every requester waits until its timeout",
                "answer it with @service.responder(topic) returning the reply model",
            )
        elif view.requesters and not view.responders:
            yield Finding(
                "request-without-reply",
                "warning",
                _topic(view),
                f"{', '.join(_services(view.requesters))} send(s) requests, but no linted "
                "service responds",
                "lint the responding service together with its requesters, or add a "
                "@responder for it",
            )


@rule(
    "unkeyed-stateful-event",
    "warning",
    "an unkeyed event topic consumed in batches or into per-key state",
)
def unkeyed_stateful_event(system: System, ctx: Context) -> Iterator[Finding]:
    for view in system.topics.values():
        topic = view.topic
        if not isinstance(topic, EventTopic) or topic.partition_key is not None:
            continue
        for use in view.consumers:
            if use.batch is None and not use.keeps_state:
                continue
            how = f"batch={use.batch}" if use.batch is not None else "state in its database"
            yield Finding(
                "unkeyed-stateful-event",
                "warning",
                _topic(view),
                f"{use.service}'s {use.handler or 'handler'} keeps {how}, but the events have "
                "no partition key: events about one thing land on any partition, in any order",
                f"declare EventTopic({view.name!r}, {topic.model.__name__}, partition_key=...) "
                "with the id of the thing the event is about",
            )


@rule("removed-field-read", "error", "removing a field that consumers read")
def removed_field_read(system: System, ctx: Context) -> Iterator[Finding]:
    for view in system.topics.values():
        senders = [u for u in view.uses if u.sends]
        readers = view.consumers
        # Values go from senders to consumers; a request's reply from responders to requesters.
        pairs: list[tuple[Use, Use, Any, Any, str]] = [
            (w, r, w.topic.model, r.topic.model, "") for w in senders for r in readers
        ]
        if view.kind == "request":
            pairs += [
                (
                    w,
                    r,
                    getattr(w.topic, "reply_model", None),
                    getattr(r.topic, "reply_model", None),
                    "the reply ",
                )
                for w in view.responders
                for r in view.requesters
            ]
        seen: set[tuple[str, str, str]] = set()
        for writer, reader, written, read, what in pairs:
            if written is None or read is None or written is read:
                continue
            has = set(_record_fields(written))
            for name, field in _record_fields(read).items():
                if name in has or (reader.service, what, name) in seen:
                    continue
                seen.add((reader.service, what, name))
                required = "default" not in field
                yield Finding(
                    "removed-field-read",
                    "error" if required else "warning",
                    _topic(view),
                    f"{reader.service} reads {what}{read.__name__}.{name}, which "
                    f"{writer.service}'s {written.__name__} does not have"
                    + (
                        ": it cannot decode the records"
                        if required
                        else ": it silently gets the default"
                    ),
                    f"keep {name} in {written.__name__} (with a default) until no consumer "
                    f"reads it, or drop it from {reader.service}'s model first",
                )
        yield from _removed_since_registered(view, ctx)


def _record_fields(model: type[Any]) -> dict[str, dict[str, Any]]:
    schema = avro_schema(model)
    if not isinstance(schema, dict):
        return {}
    return {f["name"]: f for f in schema.get("fields", [])}


def _removed_since_registered(view: TopicView, ctx: Context) -> Iterator[Finding]:
    if ctx.registry is None or not view.consumers:
        return
    subject = f"{view.name}-value"
    try:
        registered = ctx.registry.latest(subject)
    except SchemaNotFound:
        return
    schema = registered.schema
    if not isinstance(schema, dict):
        return
    mine = _record_fields(view.topic.model)
    gone = [f["name"] for f in schema.get("fields", []) if f["name"] not in mine]
    if gone:
        readers = ", ".join(_services(view.consumers))
        yield Finding(
            "removed-field-read",
            "warning",
            _topic(view),
            f"{view.owner_use.service}'s {view.topic.model.__name__} drops "
            f"{', '.join(gone)} of {subject} version {registered.version}, which "
            f"{readers} may read",
            "check that no consumer reads it (lint them together), and keep it with a "
            "default meanwhile; `ferryman schema check` says whether the registry accepts it",
        )


@rule("no-schema", "warning", "a topic without a registered schema")
def no_schema(system: System, ctx: Context) -> Iterator[Finding]:
    if ctx.registry is None:
        return
    subjects = set(ctx.registry.subjects())
    for view in system.topics.values():
        if f"{view.name}-value" not in subjects:
            yield Finding(
                "no-schema",
                "warning",
                _topic(view),
                f"the registry has no subject {view.name}-value: nothing checks what the "
                "first producer writes against what its consumers read",
                "run `ferryman schema check` then `ferryman schema register` with the "
                "services before deploying them",
            )


@rule("topic-name-convention", "warning", "a topic name outside the declared convention")
def topic_name_convention(system: System, ctx: Context) -> Iterator[Finding]:
    pattern = re.compile(ctx.name_pattern)
    for view in system.topics.values():
        if not pattern.fullmatch(view.name):
            yield Finding(
                "topic-name-convention",
                "warning",
                _topic(view),
                f"{view.name!r} does not match the naming convention {ctx.name_pattern!r}",
                "rename the topic (a new topic, then move producers and consumers), or "
                "declare the convention you use with --name-pattern",
            )


@rule("shared-group", "error", "a consumer group shared by different services")
def shared_group(system: System, ctx: Context) -> Iterator[Finding]:
    groups: dict[str, list[str]] = {}
    for svc in system.services:
        if any(not u.sends for u in system.uses_of(svc.name)):
            groups.setdefault(svc.group, [])
            if svc.name not in groups[svc.group]:
                groups[svc.group].append(svc.name)
    for group, names in groups.items():
        if len(names) > 1:
            yield Finding(
                "shared-group",
                "error",
                f"group {group}",
                f"services {', '.join(names)} share consumer group {group!r}: the group's "
                "partitions are split among them, so each sees only part of every topic",
                "give each service its own group (the default, its name); instances of one "
                "service share a group",
            )
