"""Where things are and how a service behaves: locations from arguments or ``FERRYMAN_*``, and knobs.

One way to say where things are, the same in code, CLI and environment; arguments win over the
environment, and the environment over the embedded defaults under ``./.ferryman/``. This module is
the one place that reads those variables and resolves paths (stripping, ``~``, relative paths, the
registry beside the embedded broker's file); everything below it takes the parsed values.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from ferryman.broker import (
    DEFAULT_BROKER_URL,
    BrokerLocation,
    EmbeddedLocation,
    parse_broker_url,
)
from ferryman.errors import ConfigError

DEFAULT_BROKER = DEFAULT_BROKER_URL
DEFAULT_REGISTRY = "embedded"
DEFAULT_DATABASE_NAME = "database"
"""The default database file's name when no service is named (``<service>.db`` otherwise)."""
REGISTRY_FILE = "registry.db"
KAFKA_ENV_PREFIX = "FERRYMAN_KAFKA_"
POLL_RECORDS_KAFKA = 2000
"""``ServiceConfig.poll_records`` on Kafka by default."""
POLL_RECORDS_EMBEDDED = 4000
"""``ServiceConfig.poll_records`` on the embedded broker by default: its buffer is the only
prefetch there, and a mirror on SQLite commits bigger transactions with bigger polls (about a
third more rows/s in bench/mirror.py). On Kafka 4,000 ran slower than 2,000 in bench/peers.py."""

OnError = Literal["dead-letter", "stop"]


@dataclass(frozen=True, slots=True)
class Locations:
    """Where a service's things are, resolved: the broker, the registry URL, the database URL.

    ``registry`` is ``embedded:/absolute/path`` or an ``http(s)://`` URL, ready for
    ``open_registry``; ``database`` is an SQLAlchemy URL (an SQLite file's path made absolute).
    """

    broker: BrokerLocation
    registry: str
    database: str


def kafka_config_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """librdkafka properties from ``FERRYMAN_KAFKA_<PROPERTY>`` (dots as underscores).

    ``FERRYMAN_KAFKA_SASL_MECHANISM=PLAIN`` becomes ``sasl.mechanism=PLAIN``.
    """
    env = os.environ if environ is None else environ
    return {
        name[len(KAFKA_ENV_PREFIX) :].lower().replace("_", "."): value.strip()
        for name, value in env.items()
        if name.startswith(KAFKA_ENV_PREFIX)
    }


def _pick(arg: object, var: str, default: str, env: Mapping[str, str]) -> str:
    """The argument if given, else ``$var`` if set, else ``default``; stripped."""
    if arg is not None and not isinstance(arg, str):
        raise ConfigError(
            f"{var.removeprefix('FERRYMAN_').lower()}={arg!r} is a {type(arg).__name__}; "
            "write its location as a string (see the FERRYMAN_* forms in the README)"
        )
    if arg is not None and arg.strip():
        return arg.strip()
    return env.get(var, "").strip() or default


def broker_location(
    broker: str | None = None, environ: Mapping[str, str] | None = None
) -> BrokerLocation:
    """The broker: the argument, else ``$FERRYMAN_BROKER``, else the embedded default.

    A Kafka location carries the ``FERRYMAN_KAFKA_*`` properties.
    """
    env = os.environ if environ is None else environ
    url = _pick(broker, "FERRYMAN_BROKER", DEFAULT_BROKER, env)
    if url.startswith("kafka://"):
        return parse_broker_url(url, kafka_config_from_env(env))
    return parse_broker_url(url)


def _file(text: str, what: str, example: str) -> Path:
    """A file path as written by the user, ``~`` expanded and made absolute."""
    if not text.strip():
        raise ConfigError(f"{what} names no file; write for example {example}")
    return Path(text.strip()).expanduser().absolute()


def registry_location(registry: str, broker: BrokerLocation) -> str:
    """The registry URL that ``registry`` names, for a service on ``broker``.

    A bare ``embedded`` registry lives beside the embedded broker's file, so that every process
    sharing the broker shares its schema ids. On Kafka the registry must be named.
    """
    if registry == "embedded":
        if isinstance(broker, EmbeddedLocation):
            return f"embedded:{broker.path.parent / REGISTRY_FILE}"
        raise ConfigError(
            f"the broker is {broker} but no schema registry is named: every process that reads "
            "a topic must share its schema ids, so a registry private to this directory would "
            "make other services unable to read what this one writes. Set FERRYMAN_REGISTRY (or "
            "registry=) to your schema registry's http(s):// URL, or to embedded:PATH naming a "
            "registry file that every service of this Kafka cluster uses"
        )
    if registry.startswith("embedded:"):
        path = _file(registry[len("embedded:") :], f"registry {registry!r}", "embedded:PATH")
        return f"embedded:{path}"
    if registry.startswith(("http://", "https://")) and len(registry.split("://", 1)[1]) > 0:
        return registry.rstrip("/")
    raise ConfigError(
        f"registry {registry!r} is not a registry URL: write 'embedded' (the default, beside the "
        "embedded broker's file), embedded:PATH, or the http(s):// URL of a Confluent-compatible "
        "schema registry"
    )


def database_location(database: str) -> str:
    """The SQLAlchemy URL ``database``, an SQLite file's ``~`` or relative path made absolute."""
    scheme, sep, rest = database.partition("://")
    if not sep or not scheme:
        raise ConfigError(
            f"database {database!r} is not an SQLAlchemy URL: write sqlite:///PATH (a file) "
            "or postgresql://user@host/name"
        )
    if scheme.split("+")[0] == "sqlite" and rest.startswith("/") and len(rest) > 1:
        path, query_sep, query = rest[1:].partition("?")
        if path and path != ":memory:" and not path.startswith("file:"):
            absolute = Path(path).expanduser().absolute()
            return f"{scheme}:///{absolute}{query_sep}{query}"
    return database


def default_database(broker: BrokerLocation, service: str | None) -> str:
    """An SQLite file of the service's own: services sharing a broker never share a database."""
    directory = broker.path.parent if isinstance(broker, EmbeddedLocation) else Path(".ferryman")
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in service or "") or (
        DEFAULT_DATABASE_NAME
    )
    return f"sqlite:///{directory / name}.db"


def resolve_locations(
    broker: str | None = None,
    registry: str | object | None = None,
    database: str | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    service: str | None = None,
) -> Locations:
    """Arguments first, then ``FERRYMAN_BROKER``/``_REGISTRY``/``_DATABASE``, then the defaults.

    The default database is an SQLite file per service, ``<service>.db``, beside the embedded
    broker's file (``.ferryman/`` by default; ``.ferryman/`` of the working directory on Kafka).

    ``registry`` may be a registry opened in code (any non-string): it is used as it is.
    """
    env = os.environ if environ is None else environ
    where = broker_location(broker, env)
    if registry is not None and not isinstance(registry, str):
        # Named by the caller, so nothing to resolve (nor to refuse on Kafka); this text is
        # what the start-up summary shows.
        url = f"the {type(registry).__name__} given in code"
    else:
        url = registry_location(_pick(registry, "FERRYMAN_REGISTRY", DEFAULT_REGISTRY, env), where)
    return Locations(
        broker=where,
        registry=url,
        database=database_location(
            _pick(database, "FERRYMAN_DATABASE", default_database(where, service), env)
        ),
    )


def make_directory_for(path: Path, what: str) -> None:
    """Create the directory that will hold ``path``; ConfigError naming it if that fails."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the directory {str(path.parent)!r} for the {what} {str(path)!r} "
            f"({exc.strerror or exc}); point it at a writable directory"
        ) from exc


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """How a service consumes: grouping, back-pressure, retries, errors and shutdown.

    ``group`` defaults to the service name. ``poll_records`` is the most records one poll
    fetches (default 2,000 on Kafka, 4,000 on the embedded broker). ``max_buffered``
    (default three polls, ``3 * poll_records``) bounds the records
    fetched but not yet handled over the partitions being read: the poll thread polls only
    while a full poll fits, and otherwise waits for the handlers (nothing is paused, so nothing
    librdkafka prefetched is thrown away). ``max_in_flight`` (default: past ``max_buffered``)
    bounds them per partition; past it, or when its handler makes no progress for a second
    while the poll thread waits, the partition is paused until half is drained.
    A failing handler is retried ``retries`` times, waiting ``backoff`` seconds, multiplied by
    ``backoff_multiplier`` each time up to ``backoff_max``; then ``on_error`` decides: send the
    record to ``<topic>.dlq`` and go on, or stop the service with HandlerError.
    A schema registry that cannot be reached is no fault of the record: decoding waits for it
    with the same back-off, ``registry_retries`` times before stopping the service with
    RegistryError, or forever with None (the default); such a record is never dead-lettered.
    ``relay``: run an outbox relay inside the service: True always, False never (run
    ``ferryman relay`` instead), None (default) when the service uses its outbox.
    ``metrics``: keep Prometheus metrics (docs/operating.md), in ``metrics_registry`` (a
    ``prometheus_client.CollectorRegistry``; default: one of the service's own). ``tracing``:
    trace records with OpenTelemetry when ``opentelemetry-api`` is installed, through
    ``tracer_provider`` (an OpenTelemetry ``TracerProvider``) or else the global one.
    """

    group: str | None = None
    # None: past max_buffered, so that only a stalled handler pauses its partition. On Kafka a
    # pause drops what librdkafka prefetched for the partition: a fixed 8,000 paused partitions
    # as soon as max_buffered was raised past it, and halved the Service's throughput there.
    max_in_flight: int | None = None
    # What a Service holds besides librdkafka's own prefetch (queued.max.messages.kbytes, 64 MB
    # by default): max_buffered records, plus what paused partitions hold (each < max_in_flight).
    max_buffered: int | None = None
    # None: 2,000 on Kafka, 4,000 on the embedded broker (at most max_buffered). Each poll
    # costs a few GIL hand-overs between the poll thread and a busy event loop, so bigger polls
    # keep the loop fed (0.68x -> 0.87x of a bare loop at 500 -> 2,000, docs/benchmarks.md).
    poll_records: int | None = None
    retries: int = 3
    backoff: float = 0.1
    backoff_multiplier: float = 2.0
    backoff_max: float = 10.0
    on_error: OnError = "dead-letter"
    registry_retries: int | None = None
    commit_interval: float = 0.2
    shutdown_timeout: float = 30.0
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    create_topics: bool = True
    consumer_config: Mapping[str, str] = field(default_factory=dict)
    producer_config: Mapping[str, str] = field(default_factory=dict)
    relay: bool | None = None
    metrics: bool = True
    metrics_registry: Any = None
    tracing: bool = True
    tracer_provider: Any = None

    def __post_init__(self) -> None:
        if self.group is not None and (not isinstance(self.group, str) or not self.group.strip()):
            raise ConfigError(
                f"group={self.group!r}: write a non-empty name, or leave it out to use the "
                "service's name"
            )
        if self.on_error not in ("dead-letter", "stop"):
            raise ConfigError(
                f"on_error={self.on_error!r}: write on_error='dead-letter' (the default: retry, "
                "then <topic>.dlq) or on_error='stop' (stop the service with HandlerError)"
            )
        if self.auto_offset_reset not in ("earliest", "latest"):
            raise ConfigError(
                f"auto_offset_reset={self.auto_offset_reset!r}: write 'earliest' (the default: "
                "read a new group's topics from the start) or 'latest' (only new records)"
            )
        if self.max_in_flight is not None:
            _whole(self, "max_in_flight", 1, "a whole number >= 1, or None for max_buffered")
        if self.poll_records is not None:
            _whole(self, "poll_records", 1, "a whole number >= 1, or None for the broker's")
        if self.max_buffered is not None:
            if self.poll_records is None:
                _whole(self, "max_buffered", 1, "a whole number >= 1, or None for three polls")
            else:
                _whole(
                    self,
                    "max_buffered",
                    self.poll_records,
                    f"a whole number >= poll_records ({self.poll_records}): a full poll must "
                    "fit, or None for 3 * poll_records",
                )
        _whole(self, "retries", 0, "0 (no retry) or more")
        if self.registry_retries is not None:
            _whole(
                self,
                "registry_retries",
                0,
                "0 (stop at the first registry failure) or more, or None to wait for the "
                "registry forever (the default)",
            )
        _seconds(self, "backoff", 0)
        _seconds(self, "backoff_max", 0)
        _seconds(self, "shutdown_timeout", 0)
        _seconds(self, "commit_interval", 0, above=True)
        _number(self, "backoff_multiplier", 1, "a number >= 1 (1 keeps the back-off constant)")
        if self.relay is not None and not isinstance(self.relay, bool):
            raise ConfigError(
                f"relay={self.relay!r}: write True (always run an outbox relay in the service), "
                "False (never: run `ferryman relay`) or None (when the service uses its outbox)"
            )
        for name in ("metrics", "tracing"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}={getattr(self, name)!r}: write True or False")
        if self.tracer_provider is not None and not hasattr(self.tracer_provider, "get_tracer"):
            raise ConfigError(
                f"tracer_provider={self.tracer_provider!r}: pass an OpenTelemetry "
                "TracerProvider, or None for the global one"
            )
        if self.metrics_registry is not None and not hasattr(self.metrics_registry, "register"):
            raise ConfigError(
                f"metrics_registry={self.metrics_registry!r}: pass a "
                "prometheus_client.CollectorRegistry, or None for one of the service's own"
            )
        if not isinstance(self.create_topics, bool):
            raise ConfigError(f"create_topics={self.create_topics!r}: write True or False")
        for name in ("consumer_config", "producer_config"):
            _properties(name, getattr(self, name))

    def for_broker(self, *, embedded: bool) -> ServiceConfig:
        """This config with ``poll_records`` chosen for the broker when it is None; what the
        consumer loop runs with. Under a ``max_buffered`` of its own a poll is a third of it, up
        to the broker's default and no less than Kafka's (or the whole buffer when smaller), so
        that the poll thread need not wait for an empty buffer to poll again."""
        if self.poll_records is not None:
            return self
        poll = POLL_RECORDS_EMBEDDED if embedded else POLL_RECORDS_KAFKA
        room = self.max_buffered
        if room is not None:
            poll = min(poll, max(min(POLL_RECORDS_KAFKA, room), room // 3))
        return replace(self, poll_records=poll)

    @property
    def polled(self) -> int:
        """``poll_records``, or Kafka's default while no broker has chosen (``for_broker``)."""
        return self.poll_records if self.poll_records is not None else POLL_RECORDS_KAFKA

    @property
    def buffered(self) -> int:
        """``max_buffered``, or its default of three polls."""
        return self.max_buffered if self.max_buffered is not None else 3 * self.polled

    @property
    def in_flight(self) -> int:
        """``max_in_flight``, or its default: one more than ``buffered``, which no partition
        being read reaches (a partition pauses when it holds ``max_in_flight``), so that only a
        handler that makes no progress pauses its partition."""
        return self.max_in_flight if self.max_in_flight is not None else self.buffered + 1

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        return float(min(self.backoff_max, self.backoff * self.backoff_multiplier ** (attempt - 1)))


def _whole(config: ServiceConfig, name: str, least: int, say: str = "") -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"{name}={value!r}: write {say or f'a whole number >= {least}'}")


def _number(config: ServiceConfig, name: str, least: float, say: str, above: bool = False) -> None:
    value = getattr(config, name)
    ok = (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and (value > least if above else value >= least)
    )
    if not ok:
        raise ConfigError(f"{name}={value!r}: write {say}")


def _seconds(config: ServiceConfig, name: str, least: float, above: bool = False) -> None:
    bound = f"> {least}" if above else f">= {least}"
    _number(config, name, least, f"a finite number of seconds {bound}", above)


def _properties(name: str, value: object) -> None:
    """A mapping of client property names to string values, as librdkafka takes them."""
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigError(
            f"{name}={value!r}: write a mapping of property names to string values, "
            "e.g. {'linger.ms': '5'}"
        )
