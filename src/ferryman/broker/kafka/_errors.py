"""librdkafka's errors mapped onto ferryman's exception tree."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NoReturn, TypeVar

from confluent_kafka import KafkaError, KafkaException

from ferryman.errors import (
    BrokerError,
    BrokerUnavailable,
    ConfigError,
    InvalidTopic,
    TopicExists,
    UnknownTopic,
)

UNAVAILABLE = {
    KafkaError._TRANSPORT,
    KafkaError._TIMED_OUT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._RESOLVE,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NETWORK_EXCEPTION,
}
UNKNOWN_TOPIC = {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC}
STALE_MEMBER = {
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.FENCED_INSTANCE_ID,
    KafkaError.STALE_MEMBER_EPOCH,
    KafkaError._ASSIGNMENT_LOST,
    KafkaError._STATE,
}
LEADER_MOVING = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_LEADER_EPOCH,
    KafkaError.FENCED_LEADER_EPOCH,
    KafkaError.OFFSET_NOT_AVAILABLE,
    KafkaError.REPLICA_NOT_AVAILABLE,
}
_INVALID_TOPIC = {
    KafkaError.TOPIC_EXCEPTION,
    KafkaError.INVALID_PARTITIONS,
    KafkaError.INVALID_REPLICATION_FACTOR,
    KafkaError.INVALID_CONFIG,
    KafkaError.POLICY_VIOLATION,
    KafkaError.INVALID_REQUEST,
}


def kafka_error(exc: BaseException) -> KafkaError | None:
    """The KafkaError inside a KafkaException, if there is one."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def reason(exc: BaseException) -> str:
    err = kafka_error(exc)
    return err.str() if err is not None else str(exc)


def moving_leader(exc: BaseException) -> bool:
    """A partition's leader is being elected or moved: the request is worth repeating."""
    err = kafka_error(exc)
    return err is not None and err.code() in LEADER_MOVING


T = TypeVar("T")


def while_leader_moves(request: Callable[[], T], timeout: float) -> T:
    """``request()``, repeated while a partition's leader is being elected or moved (a new
    topic's, or a failed-over one's) for up to ``timeout`` seconds; other failures, and the
    last one, are raised as they are."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return request()
        except KafkaException as exc:
            if not moving_leader(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def raise_mapped(exc: BaseException, what: str, *, bootstrap: str, topic: str = "") -> NoReturn:
    """Raise the ferryman error for a librdkafka failure of ``what``."""
    err = kafka_error(exc)
    if err is None:
        raise BrokerError(f"{what} failed: {exc}") from exc
    code = err.code()
    if code in UNAVAILABLE:
        raise BrokerUnavailable(
            f"{what} failed: no answer from Kafka at {bootstrap} ({err.str()}); check that the "
            "brokers run and that the address, port and security settings "
            "(FERRYMAN_KAFKA_SECURITY_PROTOCOL, ...) are right"
        ) from exc
    if code in UNKNOWN_TOPIC:
        raise UnknownTopic(
            f"{what} failed: topic {topic!r} does not exist on {bootstrap}; create it first"
        ) from exc
    if code == KafkaError.TOPIC_ALREADY_EXISTS:
        raise TopicExists(
            f"{what} failed: topic {topic!r} already exists; pass exist_ok=True to accept it"
        ) from exc
    if code in _INVALID_TOPIC:
        raise InvalidTopic(f"{what} failed: {err.str()}; fix the topic's declaration") from exc
    if code == KafkaError._INVALID_ARG:
        raise ConfigError(f"{what} failed: {err.str()}; fix the librdkafka properties") from exc
    raise BrokerError(f"{what} failed: {err.str()}") from exc
