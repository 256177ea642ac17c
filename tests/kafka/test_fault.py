"""A partition leader killed with SIGKILL while producing: nothing acknowledged is lost or doubled.

Three brokers, replication factor 3, ``min.insync.replicas=2``. A producer thread sends 50,000
keyed records with a bounded number in flight; once a third of them are acknowledged, the node
leading partition 0 is killed. After the node is restarted and has caught up, a reader checks
that every acknowledged record is in the log exactly once, where its acknowledgement said, and
in per-key send order (the idempotent producer's promise).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from tests.waiting import wait_until

from ferryman.broker.kafka import KafkaBroker
from ferryman.records import Record, RecordMetadata, TopicPartition, TopicSpec

from .conftest import Cluster

TOTAL = 50_000
KEYS = 500
PARTITIONS = 3
IN_FLIGHT = 2_000
KILL_AFTER = TOTAL // 3


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    """Wait until ``condition()`` holds. A metadata request that times out (the cluster is busy
    electing leaders just after the kill, CI found one) counts as "not yet", not as a failure."""
    wait_until(condition, timeout, what, interval=0.1, ignore=(KafkaException,))


def partition_state(admin: AdminClient, topic: str) -> dict[int, tuple[int, list[int]]]:
    """Leader and in-sync replicas of every partition, as the cluster's metadata says."""
    meta = admin.list_topics(topic=topic, timeout=10).topics[topic]
    return {p: (m.leader, sorted(m.isrs)) for p, m in meta.partitions.items()}


class Sender(threading.Thread):
    """Sends ``TOTAL`` records, value ``key:seq``, and keeps what each acknowledgement said."""

    def __init__(self, broker: KafkaBroker, topic: str) -> None:
        super().__init__(name="fault-sender", daemon=True)
        self.producer = broker.producer()
        self.topic = topic
        self.acked: dict[tuple[int, int], RecordMetadata] = {}
        self.failed: list[BaseException] = []

    def run(self) -> None:
        window: deque[tuple[int, int, Future[RecordMetadata]]] = deque()
        try:
            for i in range(TOTAL):
                key, seq = i % KEYS, i // KEYS
                future = self.producer.send(self.topic, b"%d:%d" % (key, seq), key=b"key-%d" % key)
                window.append((key, seq, future))
                if len(window) >= IN_FLIGHT:
                    self.settle(*window.popleft())
            while window:
                self.settle(*window.popleft())
            self.producer.close(60.0)
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.failed.append(exc)

    def settle(self, key: int, seq: int, future: Future[RecordMetadata]) -> None:
        try:
            self.acked[(key, seq)] = future.result(timeout=300.0)
        except Exception as exc:
            self.failed.append(exc)


def read_everything(broker: KafkaBroker, topic: str) -> list[Record]:
    ends = {p: o.latest for p, o in broker.admin().offsets(topic).items()}
    reader = broker.consumer(None)
    reader.assign(TopicPartition(topic, p) for p in ends)
    got: list[Record] = []

    def at_end() -> bool:
        got.extend(reader.poll(0.5))
        return all(reader.position(TopicPartition(topic, p)) >= end for p, end in ends.items())

    wait_for(at_end, 120, f"read to the end {ends} ({len(got)} records so far)")
    reader.close()
    return got


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_of_a_partition_leader_loses_and_doubles_nothing(kafka_cluster3: Cluster) -> None:
    cluster = kafka_cluster3
    broker = KafkaBroker(cluster.bootstrap, {})
    meta = AdminClient({"bootstrap.servers": cluster.bootstrap}, logger=logging.getLogger(__name__))
    topic = f"fault.{uuid.uuid4().hex[:12]}"
    broker.admin().create_topic(
        TopicSpec(topic, PARTITIONS, {"min.insync.replicas": "2"}, replication_factor=3)
    )
    wait_for(
        lambda: all(len(isr) == 3 for _, isr in partition_state(meta, topic).values()),
        60,
        "every partition has three in-sync replicas",
    )
    victim = partition_state(meta, topic)[0][0]

    sender = Sender(broker, topic)
    sender.start()
    wait_for(
        lambda: len(sender.acked) >= KILL_AFTER or not sender.is_alive(),
        120,
        f"{KILL_AFTER} acknowledgements before the kill",
    )
    assert sender.is_alive(), "the sender finished before the leader could be killed"
    os.kill(cluster.pid(victim), signal.SIGKILL)
    acked_at_kill = len(sender.acked)

    wait_for(
        lambda: partition_state(meta, topic)[0][0] not in (victim, -1),
        120,
        f"partition 0 led by a node other than the killed node {victim}",
    )
    sender.join(600)
    assert not sender.is_alive(), "the sender did not finish"
    assert sender.failed == [], f"records not acknowledged: {sender.failed[:3]}"
    assert acked_at_kill < TOTAL == len(sender.acked)

    cluster.start()  # restart the killed node on its data
    wait_for(
        lambda: all(len(isr) == 3 for _, isr in partition_state(meta, topic).values()),
        120,
        "the restarted node back in sync on every partition",
    )

    records = read_everything(broker, topic)
    seen: dict[tuple[int, int], Record] = {}
    last_seq: dict[int, int] = {}
    for r in records:
        assert r.value is not None
        key, seq = (int(x) for x in r.value.split(b":"))
        assert (key, seq) not in seen, f"key {key} seq {seq} twice: {seen[(key, seq)]} and {r}"
        seen[(key, seq)] = r
        # a key lives in one partition, so offset order is the order its records were written
        assert seq > last_seq.get(key, -1), f"key {key}: seq {seq} after {last_seq[key]}"
        last_seq[key] = seq
    missing = sorted(set(sender.acked) - set(seen))
    assert not missing, f"{len(missing)} acknowledged records lost, first {missing[:5]}"
    for (key, seq), ack in sender.acked.items():
        r = seen[(key, seq)]
        assert (r.partition, r.offset) == (ack.partition, ack.offset), f"key {key} seq {seq}"
    assert len(records) == TOTAL
    broker.close()
