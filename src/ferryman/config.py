"""Where things are and how a service behaves: URLs from arguments or ``FERRYMAN_*``, and knobs.

One way to say where things are, the same in code, CLI and environment; arguments win over the
environment, and the environment over the embedded defaults under ``./.ferryman/``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from ferryman.broker import DEFAULT_BROKER_URL as DEFAULT_BROKER
from ferryman.errors import ConfigError

DEFAULT_REGISTRY = "embedded"
DEFAULT_DATABASE = "sqlite:///.ferryman/database.db"

OnError = Literal["dead-letter", "stop"]


@dataclass(frozen=True, slots=True)
class Locations:
    """The resolved broker, registry and database URLs of a service."""

    broker: str
    registry: str
    database: str


def resolve_locations(
    broker: str | None = None,
    registry: str | None = None,
    database: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Locations:
    """Arguments first, then ``FERRYMAN_BROKER``/``_REGISTRY``/``_DATABASE``, then the defaults."""
    env = os.environ if environ is None else environ

    def pick(arg: str | None, var: str, default: str) -> str:
        if arg is not None and arg.strip():
            return arg.strip()
        return env.get(var, "").strip() or default

    locations = Locations(
        broker=pick(broker, "FERRYMAN_BROKER", DEFAULT_BROKER),
        registry=pick(registry, "FERRYMAN_REGISTRY", DEFAULT_REGISTRY),
        database=pick(database, "FERRYMAN_DATABASE", DEFAULT_DATABASE),
    )
    if not locations.broker.startswith(("embedded:", "kafka://")):
        raise ConfigError(
            f"broker {locations.broker!r} is not a broker URL: write embedded:PATH "
            f"(default {DEFAULT_BROKER}) or kafka://host:9092[,host2:9092]"
        )
    if locations.registry != "embedded" and not locations.registry.startswith(
        ("http://", "https://", "embedded:")
    ):
        raise ConfigError(
            f"registry {locations.registry!r} is not a registry URL: write 'embedded' "
            "(the default) or the http(s):// URL of a Confluent-compatible schema registry"
        )
    return locations


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """How a service consumes: grouping, back-pressure, retries, errors and shutdown.

    ``group`` defaults to the service name. ``poll_records`` is the most records one poll
    fetches. ``max_in_flight`` bounds the records fetched but not yet handled per partition;
    past it the partition is paused until half is drained.
    A failing handler is retried ``retries`` times, waiting ``backoff`` seconds, multiplied by
    ``backoff_multiplier`` each time up to ``backoff_max``; then ``on_error`` decides: send the
    record to ``<topic>.dlq`` and go on, or stop the service with HandlerError.
    """

    group: str | None = None
    # Several polls' worth, so that a partition is paused when its handler falls behind, not
    # after every full poll: on Kafka a pause drops the records librdkafka prefetched for it.
    max_in_flight: int = 8000
    # Each poll costs a few GIL hand-overs between the poll thread and a busy event loop, so
    # bigger polls keep the loop fed (0.68x -> 0.87x of a bare loop, docs/benchmarks.md).
    poll_records: int = 2000
    retries: int = 3
    backoff: float = 0.1
    backoff_multiplier: float = 2.0
    backoff_max: float = 10.0
    on_error: OnError = "dead-letter"
    commit_interval: float = 0.2
    shutdown_timeout: float = 30.0
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    create_topics: bool = True
    consumer_config: Mapping[str, str] = field(default_factory=dict)
    producer_config: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.on_error not in ("dead-letter", "stop"):
            raise ConfigError(
                f"on_error={self.on_error!r}: write on_error='dead-letter' (the default: retry, "
                "then <topic>.dlq) or on_error='stop' (stop the service with HandlerError)"
            )
        for name in ("max_in_flight", "poll_records"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)!r}: write a number >= 1")
        if self.retries < 0:
            raise ConfigError(f"retries={self.retries!r}: write 0 (no retry) or more")
        if self.backoff < 0 or self.backoff_multiplier < 1 or self.backoff_max < 0:
            raise ConfigError(
                "backoff and backoff_max must be >= 0 and backoff_multiplier >= 1, "
                f"got backoff={self.backoff}, backoff_multiplier={self.backoff_multiplier}, "
                f"backoff_max={self.backoff_max}"
            )

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        return float(min(self.backoff_max, self.backoff * self.backoff_multiplier ** (attempt - 1)))
