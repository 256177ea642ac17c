"""The subjects the declared services will register, and how each stands against the registry.

Each topic has a ``<topic>-value`` subject (and ``<topic>-key`` when keyed); a request topic also
``<topic>.reply-value``. A subject's rule is its topic kind's (entity and event topics
FULL_TRANSITIVE, requests BACKWARD_TRANSITIVE, replies FORWARD_TRANSITIVE): the rule the codec
sets on the subject before its first registration, so ``check`` applies the rule that will apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ferryman.errors import SchemaNotFound
from ferryman.runtime.serde import REPLY_COMPATIBILITY
from ferryman.schema.compat import check_compatibility
from ferryman.schema.models import avro_schema
from ferryman.schema.parsing import AvroSchema, canonical
from ferryman.schema.registry import Registry
from ferryman.system.view import System
from ferryman.topics import RequestTopic

Verdict = Literal["new", "registered", "compatible", "incompatible"]


@dataclass(frozen=True, slots=True)
class DeclaredSubject:
    """A subject the services' models will register: its schema, rule and where it comes from."""

    subject: str
    topic: str
    part: str
    """key, value or reply."""
    model: str
    schema: AvroSchema
    compatibility: str
    services: tuple[str, ...]


@dataclass
class SubjectCheck:
    """How one declared subject stands against the registry."""

    declared: DeclaredSubject
    verdict: Verdict
    versions: list[int] = field(default_factory=list)
    same_as: int | None = None
    """The registered version equal to the declared schema, if any."""
    reasons: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        d = self.declared
        return {
            "subject": d.subject,
            "topic": d.topic,
            "part": d.part,
            "model": d.model,
            "compatibility": d.compatibility,
            "services": list(d.services),
            "verdict": self.verdict,
            "versions": self.versions,
            "same_as": self.same_as,
            "reasons": self.reasons,
        }


def declared_subjects(system: System) -> list[DeclaredSubject]:
    """Every subject of every topic the system uses, declared by its owner's model."""
    out: list[DeclaredSubject] = []
    for view in system.topics.values():
        topic = view.topic
        services = tuple(dict.fromkeys(u.service for u in view.uses))
        parts: list[tuple[str, str, Any, str]] = []
        if topic.key_type is not None:
            parts.append((f"{topic.name}-key", "key", topic.key_type, topic.compatibility))
        parts.append((f"{topic.name}-value", "value", topic.model, topic.compatibility))
        if isinstance(topic, RequestTopic):
            parts.append(
                (f"{topic.reply_topic}-value", "reply", topic.reply_model, REPLY_COMPATIBILITY)
            )
        for subject, part, model, level in parts:
            name = getattr(model, "__name__", repr(model))
            out.append(
                DeclaredSubject(
                    subject, topic.name, part, name, avro_schema(model), level, services
                )
            )
    return out


def check_subject(registry: Registry, declared: DeclaredSubject) -> SubjectCheck:
    """Whether ``declared`` could be registered now under its rule, and if not, why."""
    try:
        versions = registry.versions(declared.subject)
    except SchemaNotFound:
        versions = []
    if not versions:
        return SubjectCheck(declared, "new")
    schemas = [registry.get_version(declared.subject, v).schema for v in versions]
    mine = canonical(declared.schema)
    for version, schema in zip(versions, schemas, strict=True):
        if canonical(schema) == mine:
            return SubjectCheck(declared, "registered", versions, same_as=version)
    problems = check_compatibility(declared.schema, schemas, declared.compatibility)
    verdict: Verdict = "incompatible" if problems else "compatible"
    return SubjectCheck(declared, verdict, versions, reasons=problems)


def register_subject(registry: Registry, declared: DeclaredSubject) -> int:
    """Register ``declared`` under its rule (set on the subject first, as the codec does)."""
    if registry.get_compatibility(declared.subject) != declared.compatibility:
        registry.set_compatibility(declared.compatibility, declared.subject)
    return registry.register(declared.subject, declared.schema)


def field_changes(old: AvroSchema, new: AvroSchema) -> list[str]:
    """The fields added, removed and changed from ``old`` to ``new``, by path (``Order.lines[]``)."""
    changes: list[str] = []
    _walk(old, new, _root_name(new), changes)
    return changes


def _root_name(schema: Any) -> str:
    return schema.get("name", "(root)") if isinstance(schema, dict) else "(root)"


def _fields(schema: Any) -> dict[str, Any] | None:
    if isinstance(schema, dict) and schema.get("type") in ("record", "error"):
        return {f["name"]: f for f in schema.get("fields", [])}
    return None


def _is_enum(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "enum"


def _type_text(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return "[" + ", ".join(_type_text(s) for s in schema) + "]"
    if isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "error", "enum", "fixed"):
            return f"{kind} {schema.get('name')}"
        if kind == "array":
            return f"array of {_type_text(schema.get('items'))}"
        if kind == "map":
            return f"map of {_type_text(schema.get('values'))}"
        if "logicalType" in schema:
            return f"{_type_text(kind)} ({schema['logicalType']})"
        return _type_text(kind)
    return repr(schema)


def _walk(old: Any, new: Any, path: str, out: list[str]) -> None:
    old_fields, new_fields = _fields(old), _fields(new)
    if _is_enum(old) and _is_enum(new):
        gone = [x for x in old["symbols"] if x not in new["symbols"]]
        added = [x for x in new["symbols"] if x not in old["symbols"]]
        if added:
            out.append(f"~ {path}: enum symbols added: {', '.join(added)}")
        if gone:
            out.append(f"~ {path}: enum symbols removed: {', '.join(gone)}")
        return
    if old_fields is None or new_fields is None:
        if canonical(old) != canonical(new):
            out.append(f"~ {path}: {_type_text(old)} -> {_type_text(new)}")
        return
    for name, spec in new_fields.items():
        if name not in old_fields:
            default = f" (default {spec['default']!r})" if "default" in spec else " (no default)"
            out.append(f"+ {path}.{name}: {_type_text(spec['type'])}{default}")
    for name, spec in old_fields.items():
        if name not in new_fields:
            out.append(f"- {path}.{name}: {_type_text(spec['type'])}")
            continue
        now = new_fields[name]
        _walk(spec["type"], now["type"], f"{path}.{name}", out)
        if ("default" in spec) != ("default" in now) or spec.get("default") != now.get("default"):
            before = repr(spec["default"]) if "default" in spec else "none"
            after = repr(now["default"]) if "default" in now else "none"
            out.append(f"~ {path}.{name}: default {before} -> {after}")
