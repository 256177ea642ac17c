"""Topic declarations: the entity, event and request/response patterns and their rules.

A declaration is checked at once, where it is written: a wrong key field, a config that
contradicts the kind, or a reserved name raises TopicDeclarationError saying what to write
instead. Each declaration gives the ``TopicSpec`` (partitions and broker config) the admin
creates, and the compatibility rule its schemas are registered under.

Keys are Avro too: an entity key (or an event's partition key) is the key field's value encoded
with the Avro schema of that field's type, registered under ``<topic>-key``. This keeps keys
readable by any Schema-Registry-aware Kafka tool and makes the partition depend only on the
key's value (murmur2 of the same bytes on every backend).
"""

from __future__ import annotations

import dataclasses
import types
import typing
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar, Generic, TypeVar

from ferryman.broker.base import is_legal_topic_name
from ferryman.errors import TopicDeclarationError
from ferryman.records import TopicSpec

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_PARTITIONS = 6
RESERVED_SUFFIXES = (".reply", ".dlq")
KEY_TYPES: tuple[type, ...] = (int, str, bytes, uuid.UUID)

DAY_MS = 24 * 60 * 60 * 1000
HOUR_MS = 60 * 60 * 1000


def model_fields(model: type[Any]) -> dict[str, Any]:
    """Field names and annotations of a dataclass or pydantic model."""
    if dataclasses.is_dataclass(model):
        hints = typing.get_type_hints(model)
        return {f.name: hints.get(f.name, f.type) for f in dataclasses.fields(model)}
    pydantic_fields = getattr(model, "model_fields", None)
    if isinstance(pydantic_fields, Mapping):
        return {name: info.annotation for name, info in pydantic_fields.items()}
    raise TopicDeclarationError(
        f"{model!r} is not a model ferryman can map to Avro: declare it as a @dataclass "
        "or a pydantic BaseModel"
    )


def _check_key_field(kind: str, name: str, model: type[Any], field: str, what: str) -> type:
    fields = model_fields(model)
    if field not in fields:
        known = ", ".join(fields) or "(none)"
        raise TopicDeclarationError(
            f"{kind} {name!r}: {what} {field!r} is not a field of {model.__name__} "
            f"(its fields: {known}); name one of them, e.g. {what.split()[0]}={next(iter(fields), 'id')!r}"
        )
    annotation = fields[field]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        raise TopicDeclarationError(
            f"{kind} {name!r}: {what} {field!r} is {annotation}, but a key cannot be optional or a "
            f"union; make {model.__name__}.{field} one of int, str, bytes or UUID"
        )
    if annotation not in KEY_TYPES:
        raise TopicDeclarationError(
            f"{kind} {name!r}: {what} {field!r} has type {annotation!r}; keys must be int, str, "
            f"bytes or UUID so every backend hashes the same bytes; change {model.__name__}.{field}'s type"
        )
    return typing.cast(type, annotation)


class Topic(Generic[T]):
    """What every kind of topic has: a name, a value model, partitions and broker config."""

    kind: ClassVar[str] = "topic"
    compatibility: ClassVar[str] = "FULL_TRANSITIVE"
    forced_config: ClassVar[dict[str, str]] = {}
    default_config: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        name: str,
        model: type[T],
        *,
        partitions: int = DEFAULT_PARTITIONS,
        config: Mapping[str, str | int] | None = None,
    ) -> None:
        _check_name(self.kind, name)
        if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
            raise TopicDeclarationError(
                f"{self.kind} {name!r}: partitions={partitions!r}; write a whole number >= 1, "
                f"e.g. partitions={DEFAULT_PARTITIONS}"
            )
        model_fields(model)  # refuses what is not a model, here rather than at first use
        self.name = name
        self.model = model
        self.partitions = partitions
        self.config = self._merge_config(dict(config or {}))

    def _merge_config(self, user: dict[str, str | int]) -> dict[str, str]:
        merged = dict(self.default_config)
        for key, value in user.items():
            text = str(value)
            forced = self.forced_config.get(key)
            if forced is not None and text != forced:
                raise TopicDeclarationError(
                    f"{self.kind} {self.name!r}: {key}={text} contradicts the kind, which needs "
                    f"{key}={forced}; {self._contradiction_hint()}"
                )
            merged[key] = text
        merged.update(self.forced_config)
        return merged

    def _contradiction_hint(self) -> str:
        return "remove that setting"

    @property
    def key_type(self) -> type | None:
        """The Python type of the record key, or None when records are unkeyed."""
        return None

    def key_of(self, value: T) -> Any:
        """The key of ``value`` (None when the topic is unkeyed)."""
        return None

    @property
    def spec(self) -> TopicSpec:
        """The TopicSpec the admin creates for this topic."""
        return TopicSpec(self.name, self.partitions, dict(self.config))

    def specs(self) -> list[TopicSpec]:
        """Every topic this declaration needs."""
        return [self.spec]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.model.__name__})"


class EntityTopic(Topic[T]):
    """The current state of each X, keyed by X's id: compacted, and a null value deletes X."""

    kind = "entity topic"
    compatibility = "FULL_TRANSITIVE"
    forced_config: ClassVar[dict[str, str]] = {"cleanup.policy": "compact"}
    default_config: ClassVar[dict[str, str]] = {
        "min.compaction.lag.ms": "0",
        "delete.retention.ms": str(DAY_MS),
        "min.cleanable.dirty.ratio": "0.5",
    }

    def __init__(
        self,
        name: str,
        model: type[T],
        key: str = "id",
        *,
        partitions: int = DEFAULT_PARTITIONS,
        config: Mapping[str, str | int] | None = None,
    ) -> None:
        if not isinstance(key, str) or not key:
            raise TopicDeclarationError(
                f"entity topic {name!r}: an entity topic needs a key field; write "
                f"EntityTopic({name!r}, {getattr(model, '__name__', 'Model')}, key='id')"
            )
        super().__init__(name, model, partitions=partitions, config=config)
        self.key = key
        self._key_type = _check_key_field(self.kind, name, model, key, "key field")

    def _contradiction_hint(self) -> str:
        return "entity topics are compacted; declare an EventTopic for a log of facts"

    @property
    def key_type(self) -> type:
        return self._key_type

    def key_of(self, value: T) -> Any:
        return getattr(value, self.key)


class _PartitionKeyed(Topic[T]):
    """A topic whose records are keyed by an optional ``partition_key`` field of the value."""

    partition_key: str | None = None
    _key_type: type | None = None

    def _set_partition_key(self, partition_key: str | None) -> None:
        self.partition_key = partition_key
        if partition_key is not None:
            self._key_type = _check_key_field(
                self.kind, self.name, self.model, partition_key, "partition_key field"
            )

    @property
    def key_type(self) -> type | None:
        return self._key_type

    def key_of(self, value: T) -> Any:
        return None if self.partition_key is None else getattr(value, self.partition_key)


class EventTopic(_PartitionKeyed[T]):
    """Immutable facts ("X happened"), kept for a retention period; optionally keyed."""

    kind = "event topic"
    compatibility = "FULL_TRANSITIVE"
    forced_config: ClassVar[dict[str, str]] = {"cleanup.policy": "delete"}
    default_config: ClassVar[dict[str, str]] = {"retention.ms": str(7 * DAY_MS)}

    def __init__(
        self,
        name: str,
        model: type[T],
        partition_key: str | None = None,
        *,
        partitions: int = DEFAULT_PARTITIONS,
        config: Mapping[str, str | int] | None = None,
    ) -> None:
        super().__init__(name, model, partitions=partitions, config=config)
        self._set_partition_key(partition_key)

    def _contradiction_hint(self) -> str:
        return "event topics keep facts by retention; declare an EntityTopic for compacted state"


class RequestTopic(_PartitionKeyed[T], Generic[T, R]):
    """ "Please do X" with its reply topic ``<name>.reply``; the responder owns both schemas."""

    kind = "request topic"
    compatibility = "BACKWARD_TRANSITIVE"
    forced_config: ClassVar[dict[str, str]] = {"cleanup.policy": "delete"}
    default_config: ClassVar[dict[str, str]] = {"retention.ms": str(HOUR_MS)}

    def __init__(
        self,
        name: str,
        model: type[T],
        *,
        reply: type[R],
        partition_key: str | None = None,
        partitions: int = DEFAULT_PARTITIONS,
        reply_partitions: int | None = None,
        config: Mapping[str, str | int] | None = None,
    ) -> None:
        super().__init__(name, model, partitions=partitions, config=config)
        self._set_partition_key(partition_key)
        try:
            model_fields(reply)
        except TopicDeclarationError as exc:
            raise TopicDeclarationError(f"request topic {name!r}: reply model: {exc}") from None
        self.reply_model = reply
        self.reply_partitions = partitions if reply_partitions is None else reply_partitions
        if self.reply_partitions < 1:
            raise TopicDeclarationError(
                f"request topic {name!r}: reply_partitions={reply_partitions!r}; write a whole "
                "number >= 1 (each requester instance reads one reply partition)"
            )

    def _contradiction_hint(self) -> str:
        return "requests are short-lived; set retention.ms instead"

    @property
    def reply_topic(self) -> str:
        """The name of the reply topic: ``<name>.reply``."""
        return f"{self.name}.reply"

    @property
    def reply_spec(self) -> TopicSpec:
        return TopicSpec(self.reply_topic, self.reply_partitions, dict(self.config))

    def specs(self) -> list[TopicSpec]:
        return [self.spec, self.reply_spec]

    def __repr__(self) -> str:
        return (
            f"RequestTopic({self.name!r}, {self.model.__name__}, reply={self.reply_model.__name__})"
        )


def dlq_name(topic: str) -> str:
    """The dead-letter topic of ``topic``."""
    return f"{topic}.dlq"


def _check_name(kind: str, name: str) -> None:
    if not is_legal_topic_name(name):
        raise TopicDeclarationError(
            f"{kind} name {name!r} is not a legal topic name: use 1-249 characters from "
            "letters, digits, '.', '_' and '-', e.g. 'orders.placed'"
        )
    for suffix in RESERVED_SUFFIXES:
        if name.endswith(suffix):
            raise TopicDeclarationError(
                f"{kind} name {name!r} ends with {suffix!r}, which ferryman reserves for the "
                f"topics it derives (<topic>.reply, <topic>.dlq); choose another name"
            )
