"""ferryman's Kafka producer and consumer against a bare confluent-kafka loop, on one broker.

    python bench/kafka_vs_bare.py [--bootstrap 127.0.0.1:9092] [--records 200000] [--rounds 3]

Both sides use the same librdkafka settings (ferryman's producer defaults: idempotent, acks=all,
murmur2_random, lz4) and the same 100-byte keyed records. Each round runs the bare loop and
ferryman's in turn, on fresh topics; the report gives the median records/s of each and the ratio
(ferryman / bare; the target is >= 0.8 for produce and for consume).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
import uuid
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer
from confluent_kafka import TopicPartition as RdPartition

from ferryman.broker.kafka import PRODUCER_DEFAULTS, KafkaBroker
from ferryman.records import TopicPartition, TopicSpec

PARTITIONS = 3


def records(n: int, size: int) -> tuple[list[bytes], list[bytes]]:
    keys = [b"key-%d" % (i % 1000) for i in range(n)]
    values = [os.urandom(size // 2).hex().encode()[:size] for _ in range(n)]
    return keys, values


def bare_produce(bootstrap: str, topic: str, keys: list[bytes], values: list[bytes]) -> float:
    producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER_DEFAULTS})
    delivered = 0

    def on_delivery(err: KafkaError | None, _: Message) -> None:
        nonlocal delivered
        if err is None:
            delivered += 1

    start = time.perf_counter()
    for key, value in zip(keys, values, strict=True):
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush()
    elapsed = time.perf_counter() - start
    assert delivered == len(keys), f"bare: {delivered} of {len(keys)} delivered"
    return elapsed


def ferryman_produce(
    broker: KafkaBroker, topic: str, keys: list[bytes], values: list[bytes]
) -> float:
    producer = broker.producer()
    start = time.perf_counter()
    futures = [
        producer.send(topic, value, key=key) for key, value in zip(keys, values, strict=True)
    ]
    producer.flush()
    elapsed = time.perf_counter() - start
    assert all(f.result(0).offset >= 0 for f in futures)
    producer.close()
    return elapsed


def bare_consume(bootstrap: str, topic: str, n: int) -> float:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([RdPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    got = 0
    start = time.perf_counter()
    while got < n:
        for msg in consumer.consume(500, timeout=1.0):
            if msg.error() is None:
                # what a handler reads: coordinates, key, value
                _ = (msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value())
                got += 1
    elapsed = time.perf_counter() - start
    consumer.close()
    return elapsed


def ferryman_consume(broker: KafkaBroker, topic: str, n: int) -> float:
    consumer = broker.consumer(None)
    consumer.assign(TopicPartition(topic, p) for p in range(PARTITIONS))
    got = 0
    start = time.perf_counter()
    while got < n:
        for record in consumer.poll(1.0, 500):
            _ = (record.topic, record.partition, record.offset, record.key, record.value)
            got += 1
    elapsed = time.perf_counter() - start
    consumer.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--bootstrap", default=os.environ.get("FERRYMAN_TEST_KAFKA", "127.0.0.1:9092")
    )
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    broker = KafkaBroker(args.bootstrap, {})
    admin = broker.admin()
    keys, values = records(args.records, args.size)
    rates: dict[str, list[float]] = {
        k: [] for k in ("bare produce", "ferryman produce", "bare consume", "ferryman consume")
    }
    created: list[str] = []

    def fresh_topic() -> str:
        name = f"bench.{uuid.uuid4().hex[:12]}"
        admin.create_topic(TopicSpec(name, PARTITIONS))
        created.append(name)
        return name

    cpu: dict[str, list[float]] = {k: [] for k in rates}

    def measure(label: str, run: Callable[[], float]) -> None:
        gc.collect()  # each side starts without the other's garbage
        before = time.process_time()
        rates[label].append(args.records / run())
        # CPU of this process (its librdkafka threads included) per record: steadier than
        # throughput when other work shares the machine
        cpu[label].append((time.process_time() - before) / args.records * 1e6)

    try:
        for _ in range(args.rounds):
            bare_topic, ferry_topic = fresh_topic(), fresh_topic()
            measure(
                "bare produce", lambda t=bare_topic: bare_produce(args.bootstrap, t, keys, values)
            )
            measure(
                "ferryman produce", lambda t=ferry_topic: ferryman_produce(broker, t, keys, values)
            )
            # both read the topic the bare loop wrote, so they read the same bytes
            measure(
                "bare consume", lambda t=bare_topic: bare_consume(args.bootstrap, t, args.records)
            )
            measure(
                "ferryman consume", lambda t=bare_topic: ferryman_consume(broker, t, args.records)
            )
    finally:
        for name in created:
            admin.delete_topic(name)
        broker.close()

    median = {label: statistics.median(r) for label, r in rates.items()}
    median_cpu = {label: statistics.median(c) for label, c in cpu.items()}
    print(
        f"Kafka at {args.bootstrap}: {args.records} records of {args.size} bytes, "
        f"{PARTITIONS} partitions, median of {args.rounds} rounds"
    )
    for label, rate in median.items():
        spread = ", ".join(f"{r:,.0f}" for r in rates[label])
        print(
            f"  {label:17} {rate:>10,.0f} records/s  {median_cpu[label]:5.1f} us CPU/record"
            f"  (rounds: {spread})"
        )
    for what in ("produce", "consume"):
        ratio = median[f"ferryman {what}"] / median[f"bare {what}"]
        cost = median_cpu[f"ferryman {what}"] / median_cpu[f"bare {what}"]
        print(
            f"  {what}: throughput ferryman/bare {ratio:.2f}x (target >= 0.80), "
            f"CPU per record {cost:.2f}x bare's"
        )


if __name__ == "__main__":
    main()
