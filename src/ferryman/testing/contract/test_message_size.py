"""Record size: ``max.message.bytes`` (Kafka's default 1048588, or the topic's) refuses bigger records."""

from __future__ import annotations

import os

import pytest

from ferryman.errors import ProduceError
from ferryman.testing.contract.backend import Backend


def send_and_wait(backend: Backend, topic: str, size: int) -> int:
    """Offset of a record of ``size`` random bytes once acknowledged; a refusal may come at
    send or on the future. Random, because Kafka's producer compresses (lz4) before the check."""
    producer = backend.producer()
    value = os.urandom(size)
    return producer.send(topic, value, key=b"k", partition=0).result(backend.join_timeout).offset


def test_a_record_over_the_default_limit_is_refused(backend: Backend) -> None:
    topic = backend.topic(1)
    with pytest.raises(ProduceError, match=r"max\.message\.bytes|too large"):
        send_and_wait(backend, topic, 2_000_000)
    # the producer is not broken by the refusal: records that fit still go through
    assert send_and_wait(backend, topic, 500_000) == 0


def test_a_topics_max_message_bytes_is_enforced(backend: Backend) -> None:
    topic = backend.topic(1, {"max.message.bytes": "10000"})
    assert send_and_wait(backend, topic, 9_000) == 0
    with pytest.raises(ProduceError, match=r"max\.message\.bytes|too large"):
        send_and_wait(backend, topic, 20_000)
    assert send_and_wait(backend, topic, 9_000) == 1
    assert backend.admin.describe_topic(topic).config["max.message.bytes"] == "10000"
