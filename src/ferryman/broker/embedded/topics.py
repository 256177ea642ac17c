"""Topic names and per-topic config checked the way Kafka checks them."""

from __future__ import annotations

from dataclasses import dataclass

from ferryman.broker.base import is_legal_topic_name
from ferryman.errors import InvalidTopic

MAX_PARTITIONS = 10_000

DEFAULTS: dict[str, str] = {
    "cleanup.policy": "delete",
    "retention.ms": "604800000",
    "retention.bytes": "-1",
    "min.compaction.lag.ms": "0",
    "delete.retention.ms": "86400000",
    "max.message.bytes": "1048588",
}

# Kafka's topic-level configs: all are accepted (so one declaration works on every backend);
# the embedded broker acts on the ones in DEFAULTS.

BATCH_OVERHEAD = 61
"""Bytes of a Kafka record batch's header: counted against ``max.message.bytes`` as Kafka does."""
RECORD_OVERHEAD = 20
"""Bytes the embedded broker stores per record besides its key, value and headers."""


def max_message_bytes(config: dict[str, str]) -> int:
    """The largest record (with its batch overhead) a topic accepts, in bytes."""
    return int(config.get("max.message.bytes", DEFAULTS["max.message.bytes"]))


KNOWN = frozenset(
    {
        *DEFAULTS,
        "compression.type",
        "file.delete.delay.ms",
        "flush.messages",
        "flush.ms",
        "follower.replication.throttled.replicas",
        "index.interval.bytes",
        "leader.replication.throttled.replicas",
        "local.retention.bytes",
        "local.retention.ms",
        "max.compaction.lag.ms",
        "max.message.bytes",
        "message.downconversion.enable",
        "message.format.version",
        "message.timestamp.after.max.ms",
        "message.timestamp.before.max.ms",
        "message.timestamp.difference.max.ms",
        "message.timestamp.type",
        "min.cleanable.dirty.ratio",
        "min.insync.replicas",
        "preallocate",
        "remote.storage.enable",
        "segment.bytes",
        "segment.index.bytes",
        "segment.jitter.ms",
        "segment.ms",
        "unclean.leader.election.enable",
    }
)

_INTEGER_MIN = {
    "retention.ms": -1,
    "retention.bytes": -1,
    "min.compaction.lag.ms": 0,
    "delete.retention.ms": 0,
    "max.compaction.lag.ms": 1,
    "segment.ms": 1,
    "segment.bytes": 14,
    "max.message.bytes": 0,
    "min.insync.replicas": 1,
    "local.retention.ms": -2,
    "local.retention.bytes": -2,
}


def check_name(name: str) -> None:
    if not is_legal_topic_name(name):
        raise InvalidTopic(
            f"invalid topic name {name!r}: use 1 to 249 characters from a-z, A-Z, 0-9, "
            "'.', '_' and '-', and not '.' or '..'"
        )


def check_partitions(name: str, partitions: int) -> None:
    if not isinstance(partitions, int) or not 1 <= partitions <= MAX_PARTITIONS:
        raise InvalidTopic(
            f"topic {name!r}: invalid partition count {partitions!r}; "
            f"use a whole number from 1 to {MAX_PARTITIONS}"
        )


def normalize_policy(value: str) -> str:
    """``compact,delete`` and ``delete, compact`` are the same policy."""
    return ",".join(sorted(p.strip() for p in value.split(",") if p.strip()))


def check_config(name: str, config: dict[str, str]) -> None:
    for key, value in config.items():
        if key not in KNOWN:
            raise InvalidTopic(
                f"topic {name!r}: unknown topic config {key!r}; use Kafka's topic config "
                f"names, such as {', '.join(sorted(DEFAULTS))}"
            )
        if not isinstance(value, str):
            raise InvalidTopic(
                f"topic {name!r}: config {key}={value!r} must be a string, like Kafka's"
            )
        if key == "cleanup.policy":
            parts = normalize_policy(value).split(",")
            if not value.strip() or not set(parts) <= {"compact", "delete"}:
                raise InvalidTopic(
                    f"topic {name!r}: invalid cleanup.policy {value!r}; "
                    "use 'delete', 'compact' or 'compact,delete'"
                )
        elif key in _INTEGER_MIN:
            try:
                number = int(value)
            except ValueError:
                number = None
            if number is None or number < _INTEGER_MIN[key]:
                raise InvalidTopic(
                    f"topic {name!r}: invalid {key}={value!r}; use a whole number "
                    f">= {_INTEGER_MIN[key]}"
                )
        elif key == "min.cleanable.dirty.ratio":
            try:
                ratio = float(value)
            except ValueError:
                ratio = -1.0
            if not 0.0 <= ratio <= 1.0:
                raise InvalidTopic(
                    f"topic {name!r}: invalid min.cleanable.dirty.ratio={value!r}; "
                    "use a number from 0 to 1"
                )


@dataclass(frozen=True, slots=True)
class Policy:
    """The cleanup settings of one topic, parsed."""

    compact: bool
    delete: bool
    retention_ms: int
    retention_bytes: int
    min_compaction_lag_ms: int
    delete_retention_ms: int

    @classmethod
    def of(cls, config: dict[str, str]) -> Policy:
        merged = {**DEFAULTS, **config}
        parts = set(normalize_policy(merged["cleanup.policy"]).split(","))
        return cls(
            compact="compact" in parts,
            delete="delete" in parts,
            retention_ms=int(merged["retention.ms"]),
            retention_bytes=int(merged["retention.bytes"]),
            min_compaction_lag_ms=int(merged["min.compaction.lag.ms"]),
            delete_retention_ms=int(merged["delete.retention.ms"]),
        )
