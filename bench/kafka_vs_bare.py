"""ferryman's Kafka producer and consumer against a bare confluent-kafka loop, on one broker.

    python bench/kafka_vs_bare.py [--bootstrap 127.0.0.1:9092] [--records 50000] [--rounds 10]

Both sides use the same librdkafka settings (ferryman's producer defaults: idempotent, acks=all,
murmur2_random, lz4) and the same 100-byte keyed records on 3 partitions. Each round runs the
bare loop and ferryman's in turn, on fresh topics. The machine is shared, and other work only
ever slows a round down, so the best round of each counts (the median is shown beside it);
the ratio is ferryman / bare, with a target of >= 0.8 for produce and for consume. Consume is timed from the
first record on, so the start (offset lookups, group coordinator) is left out on both sides.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
import uuid
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, Message, Producer
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
            "auto.offset.reset": "earliest",
        }
    )
    # Start at an explicit offset, as ferryman's standalone reader does (the topic is fresh, so
    # 0 is its start): with a logical offset librdkafka first spends ~0.5 s resolving it while
    # prefetching, and timing from the first record would then leave that prefetch out.
    consumer.assign([RdPartition(topic, p, 0) for p in range(PARTITIONS)])
    got = 0
    start = 0.0
    while got < n:
        # block for the first record, then take what is already fetched (as ferryman does;
        # consume(500, timeout) would wait for 500 records or the whole timeout)
        first = consumer.poll(1.0)
        if first is None:
            continue
        if not got:
            start = time.perf_counter()
        for msg in [first, *consumer.consume(499, timeout=0)]:
            if msg.error() is None:
                # the same fields a ferryman Record carries: a service needs its headers
                # (message id, correlation) and timestamp as much as its key and value
                _ = (
                    msg.topic(),
                    msg.partition(),
                    msg.offset(),
                    msg.key(),
                    msg.value(),
                    msg.headers(),
                    msg.timestamp(),
                )
                got += 1
    elapsed = time.perf_counter() - start
    consumer.close()
    return elapsed


def ferryman_consume(broker: KafkaBroker, topic: str, n: int, *, as_records: bool) -> float:
    consumer = broker.consumer(None)
    consumer.assign(TopicPartition(topic, p) for p in range(PARTITIONS))
    got = 0
    start = 0.0
    while got < n:
        batch = consumer.poll(1.0, 500)
        if batch and not got:
            start = time.perf_counter()
        if as_records:  # a Record object per record, read by attribute
            for r in batch:
                _ = (r.topic, r.partition, r.offset, r.key, r.value, r.headers, r.timestamp)
                got += 1
        else:  # the batch's plain rows: the same seven fields, no object built per record
            for topic_, partition, offset, key, value, headers, timestamp in batch.rows:
                _ = (topic_, partition, offset, key, value, headers, timestamp)
                got += 1
    elapsed = time.perf_counter() - start
    consumer.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--bootstrap", default=os.environ.get("FERRYMAN_TEST_KAFKA", "127.0.0.1:9092")
    )
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()

    broker = KafkaBroker(args.bootstrap, {})
    admin = broker.admin()
    keys, values = records(args.records, args.size)
    rates: dict[str, list[float]] = {
        k: []
        for k in (
            "bare produce",
            "ferryman produce",
            "bare consume",
            "ferryman consume",
            "  as Records",
        )
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
                "ferryman consume",
                lambda t=bare_topic: ferryman_consume(broker, t, args.records, as_records=False),
            )
            measure(
                "  as Records",
                lambda t=bare_topic: ferryman_consume(broker, t, args.records, as_records=True),
            )
    finally:
        for name in created:
            admin.delete_topic(name)
        broker.close()

    best = {label: max(r) for label, r in rates.items()}
    print(
        f"Kafka at {args.bootstrap}: {args.records} records of {args.size} bytes, "
        f"{PARTITIONS} partitions, {args.rounds} rounds"
    )
    print(f"  {'':17} {'best':>10}  {'median':>10}  CPU/record (best)")
    for label, r in rates.items():
        print(
            f"  {label:17} {best[label]:>10,.0f}  {statistics.median(r):>10,.0f}  "
            f"{min(cpu[label]):5.1f} us"
        )
    for what, label, base in (
        ("produce", "ferryman produce", "bare produce"),
        ("consume", "ferryman consume", "bare consume"),
        ("consume as Records", "  as Records", "bare consume"),
    ):
        ratio = best[label] / best[base]
        median = statistics.median(rates[label]) / statistics.median(rates[base])
        cost = min(cpu[label]) / min(cpu[base])
        print(
            f"  {what}: ferryman/bare {ratio:.2f}x best, {median:.2f}x median "
            f"(target >= 0.80); CPU per record {cost:.2f}x bare's"
        )


if __name__ == "__main__":
    main()
