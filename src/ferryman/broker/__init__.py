"""The seam to the log: the Broker protocol, where a log is, and the backends that implement it.

A broker location is a parsed value: ``EmbeddedLocation(path)`` for the SQLite broker in this
package, ``KafkaLocation(bootstrap, config)`` for Apache Kafka through confluent-kafka.
``parse_broker_url`` is the one parser of the URL form (``embedded:PATH`` or
``kafka://host:9092,host2:9092``); ``ferryman.config`` decides which URL applies (arguments,
``FERRYMAN_*``, defaults) and ``open_broker(location)`` opens it. Nothing here reads the environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from ferryman.broker.base import Admin, Broker, Consumer, OffsetReset, Producer
from ferryman.errors import ConfigError

DEFAULT_BROKER_URL = "embedded:.ferryman/broker.db"
_FORMS = f"write embedded:PATH (for example {DEFAULT_BROKER_URL}) or kafka://host:9092[,host2:9092]"

__all__ = [
    "DEFAULT_BROKER_URL",
    "Admin",
    "Broker",
    "BrokerLocation",
    "Consumer",
    "EmbeddedLocation",
    "KafkaLocation",
    "OffsetReset",
    "Producer",
    "open_broker",
    "parse_broker_url",
]


@dataclass(frozen=True, slots=True)
class EmbeddedLocation:
    """The embedded broker's SQLite file (absolute, ``~`` expanded)."""

    path: Path

    def __str__(self) -> str:
        return f"embedded:{self.path}"


@dataclass(frozen=True, slots=True)
class KafkaLocation:
    """Kafka's bootstrap servers and the librdkafka properties to pass through.

    ``config`` is left out of the repr and the text form: it may hold SASL passwords.
    """

    bootstrap: str
    config: Mapping[str, str] = field(default_factory=dict, repr=False, hash=False)

    def __post_init__(self) -> None:
        # Read-only, so that a location handed to several services cannot be changed under them.
        object.__setattr__(self, "config", MappingProxyType(dict(self.config)))

    def __str__(self) -> str:
        return f"kafka://{self.bootstrap}"


BrokerLocation = EmbeddedLocation | KafkaLocation


def parse_broker_url(url: str, kafka_config: Mapping[str, str] | None = None) -> BrokerLocation:
    """The location a broker URL names; a relative or ``~`` path is made absolute here, once.

    ``kafka_config`` is the librdkafka properties of a ``kafka://`` location.
    """
    text = url.strip() if isinstance(url, str) else url
    if not isinstance(text, str) or not text:
        raise ConfigError(f"broker URL {url!r} is empty; {_FORMS}")
    if text.startswith("embedded:"):
        path = text[len("embedded:") :].strip()
        if not path:
            raise ConfigError(f"broker URL {url!r} names no file; {_FORMS}")
        return EmbeddedLocation(Path(path).expanduser().absolute())
    if text.startswith("kafka://"):
        bootstrap = text[len("kafka://") :].strip().rstrip("/")
        servers = bootstrap.split(",")
        if not bootstrap or any(not s.strip() or " " in s.strip() for s in servers):
            raise ConfigError(
                f"broker URL {url!r} does not name its servers; write kafka://host:9092[,host2:9092]"
            )
        return KafkaLocation(",".join(s.strip() for s in servers), kafka_config or {})
    raise ConfigError(f"{url!r} is not a broker URL; {_FORMS}")


def open_broker(
    location: BrokerLocation | str, *, kafka_config: Mapping[str, str] | None = None
) -> Broker:
    """Open the broker at ``location``; a URL string is parsed by ``parse_broker_url``.

    ``kafka_config`` adds librdkafka properties to a Kafka location (they win over its own).
    Settings from the environment (``FERRYMAN_KAFKA_*``) come through ``ferryman.config``.
    """
    if isinstance(location, str):
        location = parse_broker_url(location)
    if isinstance(location, EmbeddedLocation):
        from ferryman.broker.embedded.broker import EmbeddedBroker

        return EmbeddedBroker(location.path)
    if isinstance(location, KafkaLocation):
        from ferryman.broker.kafka import KafkaBroker

        return KafkaBroker(location.bootstrap, {**location.config, **(kafka_config or {})})
    raise ConfigError(f"{location!r} is not a broker location; {_FORMS}")
