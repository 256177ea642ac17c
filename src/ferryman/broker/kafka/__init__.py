"""Apache Kafka through confluent-kafka (librdkafka): the Broker protocol on a real cluster.

Producers are idempotent with ``acks=all`` and the ``murmur2_random`` partitioner (the key ->
partition rule of every backend); a thread serves their delivery reports as futures. Consumers
commit explicitly, use cooperative-sticky assignment and report rebalances through the protocol's
callbacks. Any librdkafka property in ``config`` passes through and wins over these defaults.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from ferryman.broker.base import OffsetReset
from ferryman.broker.kafka._errors import UNAVAILABLE, kafka_error, raise_mapped, reason
from ferryman.broker.kafka.admin import KafkaAdmin
from ferryman.broker.kafka.consumer import CONSUMER_DEFAULTS, KafkaConsumer
from ferryman.broker.kafka.producer import PRODUCER_DEFAULTS, KafkaProducer
from ferryman.errors import BrokerUnavailable, ClientClosed, ConfigError

__all__ = [
    "CONSUMER_DEFAULTS",
    "PRODUCER_DEFAULTS",
    "KafkaAdmin",
    "KafkaBroker",
    "KafkaConsumer",
    "KafkaProducer",
]

log = logging.getLogger("ferryman.broker.kafka")


def _client_config(
    bootstrap: str, defaults: Mapping[str, Any], *overrides: Mapping[str, str] | None
) -> dict[str, Any]:
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": log, **defaults}
    for more in overrides:
        config.update(more or {})
    return config


class KafkaBroker:
    """A connection to one Kafka cluster; makes admin clients, producers and consumers.

    Construction asks the cluster for its metadata and raises BrokerUnavailable if no broker
    answers within ``connect_timeout`` seconds; ``timeout`` bounds every later admin request.
    """

    def __init__(
        self,
        bootstrap: str,
        config: Mapping[str, str],
        *,
        connect_timeout: float = 5.0,
        timeout: float = 30.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.config = dict(config)
        self.timeout = timeout
        self._admin: KafkaAdmin | None = None
        self._closed = False
        self._admin_client = self._new_admin_client()
        try:
            self._admin_client.list_topics(timeout=connect_timeout)
        except KafkaException as exc:
            err = kafka_error(exc)
            if err is not None and err.code() in UNAVAILABLE:
                raise BrokerUnavailable(
                    f"no Kafka broker answered at {bootstrap} within {connect_timeout:g}s: check "
                    "that Kafka runs there (for tests: scripts/kafka.sh start), that the host and "
                    "port are right, and the security settings (FERRYMAN_KAFKA_SECURITY_PROTOCOL, "
                    "FERRYMAN_KAFKA_SASL_*)"
                ) from exc
            raise_mapped(exc, "connecting to Kafka", bootstrap=bootstrap)

    def _new_admin_client(self) -> AdminClient:
        try:
            return AdminClient(_client_config(self.bootstrap, {}, self.config))
        except (KafkaException, ValueError, TypeError) as exc:
            raise ConfigError(
                f"bad Kafka client configuration for {self.bootstrap}: {reason(exc)}; check the "
                "librdkafka properties passed (FERRYMAN_KAFKA_*)"
            ) from exc

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosed(f"the Kafka broker {self.bootstrap} was closed; open a new one")

    def admin(self) -> KafkaAdmin:
        self._check_open()
        if self._admin is None:
            self._admin = KafkaAdmin(self._admin_client, self.bootstrap, self.timeout)
        return self._admin

    def producer(self, config: Mapping[str, str] | None = None) -> KafkaProducer:
        self._check_open()
        return KafkaProducer(
            _client_config(self.bootstrap, PRODUCER_DEFAULTS, self.config, config),
            self.timeout,
        )

    def consumer(
        self,
        group_id: str | None,
        *,
        auto_offset_reset: OffsetReset = "earliest",
        config: Mapping[str, str] | None = None,
    ) -> KafkaConsumer:
        self._check_open()
        # librdkafka needs a group id even for assign(); a standalone one never joins or commits.
        group = group_id if group_id is not None else f"ferryman-standalone-{uuid.uuid4().hex}"
        settings = _client_config(
            self.bootstrap,
            {**CONSUMER_DEFAULTS, "auto.offset.reset": auto_offset_reset},
            self.config,
            config,
            {"group.id": group},
        )
        return KafkaConsumer(settings, group_id, auto_offset_reset, self.timeout)

    def close(self) -> None:
        self._closed = True
