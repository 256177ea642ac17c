"""Events/s through a Service handler (Avro values) against a bare consume + fastavro loop.

Run: ``python bench/service_events.py`` (embedded broker in a temp dir) or
``python bench/service_events.py --broker kafka://127.0.0.1:9092``; ``--events N``;
``--poll-records N`` (default: the Service's on the broker) is the batch of one poll on both sides;
``--max-in-flight N`` and ``--consumer-config PROPERTY=VALUE`` change the Service's settings.

Both sides read the same N events (Avro, Confluent wire format) from the same topic, each in a
fresh consumer group, timed from the first event to the last (the group join is not timed):

- bare: one thread, ``fastavro.schemaless_reader`` per value (5-byte header skipped, schema
  parsed once), no commits; on Kafka bare confluent-kafka (``Consumer.consume(poll_records)``),
  on the embedded broker its consumer's ``poll``;
- service: ``@svc.on(topic)`` with an async handler that counts; the runtime's poll thread,
  per-partition workers, model decoding and periodic commits included.

``--rss``: the Service side samples its process's resident memory every 0.2 s and prints it
after warm-up (a tenth of the events), at its highest after that, and at each tenth of the
events; the events are then produced in a process of their own. They are produced through
``emit``, or with ``--bulk`` straight to the broker's producer (the same records, 2-3x faster).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro

from ferryman.broker import open_broker
from ferryman.config import ServiceConfig
from ferryman.records import TopicSpec
from ferryman.service import Service
from ferryman.topics import EventTopic


@dataclass
class OrderPlaced:
    order_id: str
    customer_id: int
    sku: str
    quantity: int
    total: float
    note: str


def _event(i: int) -> OrderPlaced:
    return OrderPlaced(f"o-{i}", i % 997, "kettle", 1 + i % 5, 24.5 * (1 + i % 5), "x" * 40)


def produce(broker: str, registry: str, topic: EventTopic[OrderPlaced], n: int) -> None:
    """The events, each through ``Service.emit``."""
    svc = Service("bench-producer", broker=broker, registry=registry)
    for i in range(n):
        svc.emit(topic, _event(i))
    assert svc.flush(300) == 0
    asyncio.run(svc.stop())


def produce_bulk(broker: str, registry: str, topic: EventTopic[OrderPlaced], n: int) -> None:
    """The events as ``Service.emit`` sends them, in bulk: the first through ``emit`` (it
    creates the topic and registers the key and value schemas), the rest encoded here with
    fastavro (Confluent wire format, the registered ids) with the same key and headers, and
    queued on the broker's producer without a Delivery each (~16,000 events/s here where emit
    made ~7,000: 5,000,000 events would take 12 minutes through emit). The embedded broker
    then writes larger batch rows than at emit's pace: ``--bulk`` is for memory runs; the
    speed comparison stays on logs written by ``emit``."""
    from ferryman.runtime.headers import MESSAGE_ID, SOURCE, new_id_bytes
    from ferryman.schema import open_registry

    svc = Service("bench-producer", broker=broker, registry=registry)
    svc.emit(topic, _event(0))
    assert svc.flush(60) == 0
    asyncio.run(svc.stop())
    reg = open_registry(registry)
    writers = []
    for field in ("key", "value"):
        latest = reg.latest(f"{topic.name}-{field}")
        schema = fastavro.parse_schema(latest.schema)  # parsed JSON ("string" for the key)
        writers.append((b"\0" + latest.schema_id.to_bytes(4, "big"), schema))
    reg.close()
    write = fastavro.schemaless_writer
    (key_header, key_schema), (value_header, value_schema) = writers

    def encode(header: bytes, schema: Any, datum: Any) -> bytes:
        buf = io.BytesIO()
        buf.write(header)
        write(buf, schema, datum)
        return buf.getvalue()

    opened = open_broker(broker)
    producer = opened.producer()
    source = (SOURCE, b"bench-producer")
    for i in range(1, n):
        e = vars(_event(i))
        producer.send(
            topic.name,
            encode(value_header, value_schema, e),
            key=encode(key_header, key_schema, e["order_id"]),
            headers=((MESSAGE_ID, new_id_bytes()), source),
        )
    assert producer.flush(600) == 0
    producer.close()
    opened.close()


def create_topics(broker: str, specs: list[TopicSpec]) -> None:
    """Create ``specs`` through an admin client of the bench's own."""
    opened = open_broker(broker)
    admin = opened.admin()
    try:
        for spec in specs:
            admin.create_topic(spec, exist_ok=True)
    finally:
        admin.close()
        opened.close()


Result = tuple[float, float]
"""(events per second of wall-clock time, CPU microseconds per event in this process)."""


def bare(broker_url: str, registry_path: str, topic: str, n: int, batch: int) -> Result:
    from ferryman.schema import open_registry

    registry = open_registry(registry_path)
    schema_text = registry.latest(f"{topic}-value").schema
    schema = fastavro.parse_schema(
        json.loads(schema_text) if isinstance(schema_text, str) else schema_text
    )
    registry.close()
    reader = fastavro.schemaless_reader
    group = f"bench-bare-{uuid.uuid4().hex[:6]}"
    got = 0
    start = cpu = 0.0
    if broker_url.startswith("kafka://"):
        from confluent_kafka import Consumer

        kafka = Consumer(
            {
                "bootstrap.servers": broker_url.removeprefix("kafka://"),
                "group.id": group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        kafka.subscribe([topic])
        while got < n:
            messages: list[Any] = kafka.consume(batch, 1.0)  # Any: the stubs make value Optional
            if messages and not got:
                start, cpu = time.perf_counter(), time.process_time()
            for m in messages:
                if m.error() is None:
                    buf = io.BytesIO(m.value())
                    buf.seek(5)
                    reader(buf, schema, None)
                    got += 1
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        kafka.close()
        return n / elapsed, cpu / n * 1e6
    broker = open_broker(broker_url)
    consumer = broker.consumer(group)
    consumer.subscribe([topic])
    while got < n:
        rows = consumer.poll(1.0, batch).rows
        if rows and not got:
            start, cpu = time.perf_counter(), time.process_time()
        for row in rows:
            buf = io.BytesIO(row[4] or b"")
            buf.seek(5)
            reader(buf, schema, None)
            got += 1
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    consumer.close()
    broker.close()
    return n / elapsed, cpu / n * 1e6


def rss_mb() -> float:
    """This process's resident memory, in MB (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def service(
    broker: str,
    registry: str,
    topic: EventTopic[OrderPlaced],
    n: int,
    batch: int,
    overrides: dict[str, Any],
    rss: bool = False,
) -> Result:
    async def main() -> Result:
        svc = Service(
            f"bench-service-{uuid.uuid4().hex[:6]}",
            broker=broker,
            registry=registry,
            config=ServiceConfig(poll_records=batch, **overrides),
        )
        count = 0
        done = asyncio.Event()
        start = cpu = 0.0

        @svc.on(topic)
        async def handle(event: OrderPlaced) -> None:
            nonlocal count, start, cpu
            if not count:
                start, cpu = time.perf_counter(), time.process_time()
            count += 1
            if count == n:
                done.set()

        async def sample() -> None:
            warm = peak = 0.0
            tenths: list[float] = []  # RSS when each tenth of the events had been handled
            while not done.is_set():
                now = rss_mb()
                if not warm and count >= n // 10:
                    warm = now
                if warm:
                    peak = max(peak, now)
                while len(tenths) < 10 and count >= n * (len(tenths) + 1) // 10:
                    tenths.append(now)
                await asyncio.sleep(0.2)
            tenths += [rss_mb()] * (10 - len(tenths))  # the last tenth ends the loop above
            print(
                f"RSS: {warm:.0f} MB after warm-up ({n // 10} events), {peak:.0f} MB at most "
                f"after it, {rss_mb():.0f} MB at the end: growth {peak - warm:+.0f} MB after "
                "warm-up\nRSS at each tenth of the events (MB): "
                + " ".join(f"{x:.0f}" for x in tenths)
            )

        # Topic creation (the DLQ too) is a one-time cost the bare loop does not pay: done first.
        await asyncio.to_thread(create_topics, broker, svc.topic_specs())
        await svc.start()
        sampler = asyncio.create_task(sample()) if rss else None
        await done.wait()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        if sampler is not None:
            await sampler
        await svc.stop()
        return n / elapsed, cpu / n * 1e6

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--broker", default=None, help="broker URL (default: embedded, temp dir)")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--poll-records",
        type=int,
        default=None,
        help="records per poll, both sides alike (default: the Service's on the broker)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="best of N for each side")
    parser.add_argument(
        "--max-in-flight", type=int, default=None, help="the Service's (default: its default)"
    )
    parser.add_argument(
        "--consumer-config",
        action="append",
        default=[],
        metavar="PROPERTY=VALUE",
        help="a consumer property for the Service, e.g. fetch.wait.max.ms=500 (repeatable)",
    )
    parser.add_argument("--rss", action="store_true", help="sample the Service's memory")
    parser.add_argument("--no-bare", action="store_true", help="the Service side only")
    parser.add_argument(
        "--bulk",
        action="store_true",
        help="produce the events in bulk, not through emit (for long memory runs)",
    )
    args = parser.parse_args()
    overrides: dict[str, Any] = {}
    if args.max_in_flight is not None:
        overrides["max_in_flight"] = args.max_in_flight
    if args.consumer_config:
        overrides["consumer_config"] = dict(kv.split("=", 1) for kv in args.consumer_config)
    with tempfile.TemporaryDirectory(prefix="ferryman-bench-") as tmp:
        broker = args.broker or f"embedded:{Path(tmp) / 'broker.db'}"
        if args.poll_records is None:  # what a Service polls on this broker by default
            embedded = not broker.startswith("kafka")
            args.poll_records = ServiceConfig().for_broker(embedded=embedded).polled
        registry = f"embedded:{Path(tmp) / 'registry.db'}"
        topic = EventTopic(
            f"bench.orders.{uuid.uuid4().hex[:6]}",
            OrderPlaced,
            partition_key="order_id",
            partitions=args.partitions,
        )
        t0 = time.perf_counter()
        make = produce_bulk if args.bulk else produce
        if args.rss:  # in a process of its own, so the memory sampled is the consuming side's
            producer = multiprocessing.get_context("spawn").Process(
                target=make, args=(broker, registry, topic, args.events)
            )
            producer.start()
            producer.join()
            if producer.exitcode != 0:
                raise SystemExit(f"producing the events failed (exit {producer.exitcode})")
        else:
            make(broker, registry, topic, args.events)
        print(f"produced {args.events} events in {time.perf_counter() - t0:.1f}s")
        bares, services = [], []
        for _ in range(args.rounds):  # interleaved, so a noisy neighbour hits both sides alike
            if not args.no_bare:
                bares.append(bare(broker, registry, topic.name, args.events, args.poll_records))
            services.append(
                service(
                    broker, registry, topic, args.events, args.poll_records, overrides, args.rss
                )
            )
        if args.no_bare:
            s = max(services)
            print(f"Service handler: {s[0]:>9,.0f} events/s  {s[1]:5.1f} us CPU/event")
            return
        b, s = max(bares), max(services)
        b_cpu, s_cpu = min(c for _, c in bares), min(c for _, c in services)
        kind = broker.split(":", 1)[0]
        print(
            f"backend={kind} events={args.events} partitions={args.partitions} "
            f"poll_records={args.poll_records} best of {args.rounds} "
            f"service overrides={overrides or 'none'}"
        )
        print(f"bare consume + fastavro: {b[0]:>9,.0f} events/s  {b_cpu:5.1f} us CPU/event")
        print(f"Service handler:         {s[0]:>9,.0f} events/s  {s_cpu:5.1f} us CPU/event")
        print(
            f"ratio: {s[0] / b[0]:.2f}x by wall clock, {b_cpu / s_cpu:.2f}x by CPU "
            "(target >= 0.9x embedded, >= 0.85x Kafka)"
        )


if __name__ == "__main__":
    main()
