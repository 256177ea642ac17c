"""How long a handler may hold its records: Kafka's ``max.poll.interval.ms``, read once.

The consumer loop's poll thread watches its handlers against this limit and leaves the group
while one is stuck past it, as a Kafka consumer that stops polling does.
"""

from __future__ import annotations

from ferryman.broker import KafkaLocation
from ferryman.config import ServiceConfig
from ferryman.errors import ConfigError
from ferryman.runtime.connections import Connections

DEFAULT_MAX_POLL_INTERVAL_MS = 300_000


def max_poll_interval(connections: Connections, config: ServiceConfig) -> float:
    """Seconds a handler may hold its records before its member leaves the group: Kafka's
    ``max.poll.interval.ms``, from the service's consumer_config or FERRYMAN_KAFKA_*."""
    raw = config.consumer_config.get("max.poll.interval.ms")
    broker = connections.locations.broker
    if raw is None and isinstance(broker, KafkaLocation):
        raw = broker.config.get("max.poll.interval.ms")
    try:
        ms = int(raw if raw is not None else DEFAULT_MAX_POLL_INTERVAL_MS)
    except ValueError:
        raise ConfigError(
            f"max.poll.interval.ms={raw!r}: write a whole number of milliseconds, e.g. 300000"
        ) from None
    if ms < 1:
        raise ConfigError(f"max.poll.interval.ms={raw!r}: write a number of milliseconds >= 1")
    return ms / 1000
