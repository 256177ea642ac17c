"""The seam to the log: the Broker protocol and the backends that implement it.

``open_broker(url)`` turns the one way ferryman says where a log is into a backend:

- ``embedded:PATH`` (default ``embedded:.ferryman/broker.db``): the SQLite broker in this package;
- ``kafka://host:9092,host2:9092``: Apache Kafka through confluent-kafka.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ferryman.broker.base import Admin, Broker, Consumer, OffsetReset, Producer
from ferryman.errors import ConfigError

DEFAULT_BROKER_URL = "embedded:.ferryman/broker.db"
KAFKA_ENV_PREFIX = "FERRYMAN_KAFKA_"

__all__ = [
    "DEFAULT_BROKER_URL",
    "Admin",
    "Broker",
    "Consumer",
    "OffsetReset",
    "Producer",
    "kafka_config_from_env",
    "open_broker",
]


def kafka_config_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """librdkafka properties from ``FERRYMAN_KAFKA_<PROPERTY>`` (dots as underscores).

    ``FERRYMAN_KAFKA_SASL_MECHANISM=PLAIN`` becomes ``sasl.mechanism=PLAIN``.
    """
    env = os.environ if environ is None else environ
    return {
        name[len(KAFKA_ENV_PREFIX) :].lower().replace("_", "."): value
        for name, value in env.items()
        if name.startswith(KAFKA_ENV_PREFIX)
    }


def open_broker(url: str | None = None, *, kafka_config: Mapping[str, str] | None = None) -> Broker:
    """Open the broker at ``url`` (default: ``$FERRYMAN_BROKER``, else the embedded default).

    ``kafka_config`` adds librdkafka properties; by default they come from ``FERRYMAN_KAFKA_*``.
    """
    url = url or os.environ.get("FERRYMAN_BROKER") or DEFAULT_BROKER_URL
    if url.startswith("embedded:"):
        from ferryman.broker.embedded import EmbeddedBroker

        path = url[len("embedded:") :]
        if not path:
            raise ConfigError(
                f"broker URL {url!r} names no file; write embedded:PATH, "
                f"for example {DEFAULT_BROKER_URL}"
            )
        return EmbeddedBroker(path)
    if url.startswith("kafka://"):
        from ferryman.broker.kafka import KafkaBroker

        bootstrap = url[len("kafka://") :].rstrip("/")
        if not bootstrap:
            raise ConfigError(
                f"broker URL {url!r} names no server; write kafka://host:9092[,host2:9092]"
            )
        config = dict(kafka_config_from_env() if kafka_config is None else kafka_config)
        return KafkaBroker(bootstrap, config)
    raise ConfigError(
        f"unknown broker URL {url!r}: use embedded:PATH (for example {DEFAULT_BROKER_URL}) "
        "or kafka://host:9092[,host2:9092]"
    )
