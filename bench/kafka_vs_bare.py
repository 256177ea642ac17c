"""ferryman's Kafka producer and consumer against a bare confluent-kafka loop, on one broker.

    python bench/kafka_vs_bare.py [--bootstrap 127.0.0.1:9092] [--records 50000] [--rounds 12]
                                  [--prefetch 1.0]

Both sides use the same librdkafka settings (ferryman's producer defaults: idempotent, acks=all,
murmur2_random, lz4) and the same 100-byte keyed records on 3 partitions. Each round runs the
bare loops and ferryman's on fresh topics, in an order that rotates from round to round. The
ratio is ferryman / bare, with a target of >= 0.8 for produce and for consume.

Consume: each reader starts at offset 0, waits ``--prefetch`` seconds for librdkafka to fetch
the records into its local queue, and is timed from its first record to its last. Fetching is
librdkafka's work on both sides; what differs, and what is timed, is the application thread
turning fetched messages into what the caller reads (``--prefetch 0`` times the fetch as well).
Every consumer reads the seven fields of every record: the bare loop with the Message methods,
ferryman from ``batch.rows`` and, on the line "as Records", as Record objects.

The machine is shared and other work only ever slows a run down, so besides wall-clock
records/s (median and best of the rounds) the script prints the CPU time of the timed thread
per record, which other processes disturb far less.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
import uuid
from collections.abc import Callable
from functools import partial

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


Timing = tuple[float, float]
"""(wall-clock seconds, CPU seconds of the timed thread)"""


def bare_consume(bootstrap: str, topic: str, n: int, prefetch: float) -> Timing:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    # Start at an explicit offset, as ferryman's standalone reader does (the topic is fresh, so
    # 0 is its start): with a logical offset librdkafka first spends ~0.5 s resolving it.
    consumer.assign([RdPartition(topic, p, 0) for p in range(PARTITIONS)])
    time.sleep(prefetch)
    got = 0
    start = cpu = 0.0
    while got < n:
        # block for the first record, then take what is already fetched (as ferryman does;
        # consume(500, timeout) would wait for 500 records or the whole timeout)
        first = consumer.poll(1.0)
        if first is None:
            continue
        if not got:
            start, cpu = time.perf_counter(), time.thread_time()
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
    timing = (time.perf_counter() - start, time.thread_time() - cpu)
    consumer.close()
    return timing


def ferryman_consume(
    broker: KafkaBroker, topic: str, n: int, prefetch: float, *, as_records: bool
) -> Timing:
    consumer = broker.consumer(None)
    consumer.assign(TopicPartition(topic, p) for p in range(PARTITIONS))
    time.sleep(prefetch)
    got = 0
    start = cpu = 0.0
    while got < n:
        batch = consumer.poll(1.0, 500)
        if batch and not got:
            start, cpu = time.perf_counter(), time.thread_time()
        if as_records:  # a Record object per record, read by attribute
            for r in batch:
                _ = (r.topic, r.partition, r.offset, r.key, r.value, r.headers, r.timestamp)
                got += 1
        else:  # the batch's plain rows: the same seven fields, no object built per record
            for topic_, partition, offset, key, value, headers, timestamp in batch.rows:
                _ = (topic_, partition, offset, key, value, headers, timestamp)
                got += 1
    timing = (time.perf_counter() - start, time.thread_time() - cpu)
    consumer.close()
    return timing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--bootstrap", default=os.environ.get("FERRYMAN_TEST_KAFKA", "127.0.0.1:9092")
    )
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument(
        "--prefetch", type=float, default=1.0, help="seconds a reader waits before it is timed"
    )
    args = parser.parse_args()

    broker = KafkaBroker(args.bootstrap, {})
    admin = broker.admin()
    keys, values = records(args.records, args.size)
    labels = ("bare produce", "ferryman produce", "bare consume", "ferryman consume", "as Records")
    rates: dict[str, list[float]] = {label: [] for label in labels}
    cpu: dict[str, list[float]] = {label: [] for label in labels}
    created: list[str] = []

    def fresh_topic() -> str:
        name = f"bench.{uuid.uuid4().hex[:12]}"
        admin.create_topic(TopicSpec(name, PARTITIONS))
        created.append(name)
        return name

    def measure(label: str, run: Callable[[], Timing | float]) -> None:
        gc.collect()  # each side starts without the other's garbage
        before = time.process_time()
        timing = run()
        if isinstance(timing, tuple):
            wall, used = timing
        else:  # produce: the whole process, its librdkafka threads included
            wall, used = timing, time.process_time() - before
        rates[label].append(args.records / wall)
        cpu[label].append(used / args.records * 1e6)

    def rotated(runs: list[tuple[str, Callable[[], Timing | float]]], by: int) -> None:
        for label, run in runs[by % len(runs) :] + runs[: by % len(runs)]:
            measure(label, run)

    n, wait = args.records, args.prefetch
    try:
        for i in range(args.rounds):
            bare_topic, ferry_topic = fresh_topic(), fresh_topic()
            rotated(
                [
                    (
                        "bare produce",
                        partial(bare_produce, args.bootstrap, bare_topic, keys, values),
                    ),
                    (
                        "ferryman produce",
                        partial(ferryman_produce, broker, ferry_topic, keys, values),
                    ),
                ],
                i,
            )
            # all read the topic the bare loop wrote, so they read the same bytes
            rotated(
                [
                    ("bare consume", partial(bare_consume, args.bootstrap, bare_topic, n, wait)),
                    (
                        "ferryman consume",
                        partial(ferryman_consume, broker, bare_topic, n, wait, as_records=False),
                    ),
                    (
                        "as Records",
                        partial(ferryman_consume, broker, bare_topic, n, wait, as_records=True),
                    ),
                ],
                i,
            )
    finally:
        for name in created:
            admin.delete_topic(name)
        broker.close()

    print(
        f"Kafka at {args.bootstrap}: {args.records} records of {args.size} bytes, "
        f"{PARTITIONS} partitions, {args.rounds} rounds, prefetch {args.prefetch} s"
    )
    print(
        f"  {'':17} {'median/s':>10}  {'best/s':>10}  CPU/record (median): produce: process, consume: reading thread"
    )
    for label, r in rates.items():
        print(
            f"  {label:17} {statistics.median(r):>10,.0f}  {max(r):>10,.0f}  "
            f"{statistics.median(cpu[label]):6.2f} us"
        )
    for what, label, base in (
        ("produce", "ferryman produce", "bare produce"),
        ("consume", "ferryman consume", "bare consume"),
        ("consume as Records", "as Records", "bare consume"),
    ):
        median = statistics.median(rates[label]) / statistics.median(rates[base])
        best = max(rates[label]) / max(rates[base])
        cost = statistics.median(cpu[base]) / statistics.median(cpu[label])
        print(
            f"  {what}: ferryman/bare {median:.2f}x median, {best:.2f}x best; "
            f"by CPU per record {cost:.2f}x (target >= 0.80)"
        )


if __name__ == "__main__":
    main()
