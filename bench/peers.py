"""ferryman's Service against bare confluent-kafka and the Python peers, on one Kafka topic.

    pip install -e '.[bench]'   # quixstreams needs confluent-kafka < 2.13: see docs/benchmarks.md
    python bench/peers.py [--bootstrap 127.0.0.1:9092] [--events 200000] [--rounds 3]
                          [--only bare,ferryman-one,...] [--quix-python PATH]

The topic holds ``--events`` Avro events (Confluent wire format, ``--partitions`` partitions),
produced by ferryman once. Each round runs every contender in a process of its own, in a
fresh consumer group, in an order that rotates from round to round. Every contender does the
same work per message: decode the value with fastavro (schema parsed once, 5-byte header
skipped; ferryman decodes through its registry into the event's dataclass) and check it. The
check marks the event's number in a bytearray: a number seen twice is a duplicate, a value
whose fields do not match its number is bad, and the run ends when every number was seen. A
run with a duplicate, a bad value or a missing event is reported as FAILED.

The clock starts at the first message and stops at the last one (the group join is not
timed); CPU is the process's (all threads: librdkafka's too) over the same span. The figures
of a contender are its best and median rounds by wall clock and its least CPU per message.

``--side produce``: each run sends ``--events`` events to a fresh topic (bare: fastavro +
``Producer.produce``; ferryman: ``Service.emit``; the peers: their publish calls, each value
encoded with fastavro in the Confluent wire format as bare does), timed from the first send
to the last acknowledgement; the run checks that every send was acknowledged, then
reads the topic back and checks it holds exactly the events (each once, its fields right).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro

BATCH = 500
"""The batch of every batched contender (ferryman ``batch=``, FastStream ``max_records``)."""


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


class Check:
    """Counts events; every number once, with the fields it was produced with."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.seen = bytearray(n)
        self.distinct = 0
        self.duplicates = 0
        self.bad = 0
        self.start = 0.0
        self.cpu = 0.0
        self.done = False

    def __call__(self, order_id: str, customer_id: int, quantity: int) -> None:
        i = int(order_id[2:])
        if not self.distinct and not self.start:
            self.start, self.cpu = time.perf_counter(), time.process_time()
        if customer_id != i % 997 or quantity != 1 + i % 5:
            self.bad += 1
        if self.seen[i]:
            self.duplicates += 1
            return
        self.seen[i] = 1
        self.distinct += 1
        if self.distinct == self.n:
            self.finish()

    def finish(self) -> None:
        elapsed = time.perf_counter() - self.start
        cpu = time.process_time() - self.cpu
        result = {
            "msgs_s": self.n / elapsed,
            "cpu_us": cpu / self.n * 1e6,
            "duplicates": self.duplicates,
            "bad": self.bad,
        }
        print("RESULT " + json.dumps(result), flush=True)
        self.done = True
        os._exit(0)  # frameworks' shutdown (group leave, commits) is not what is measured


def _decoder(schema_file: str) -> Callable[[bytes], Any]:
    schema = fastavro.parse_schema(json.loads(Path(schema_file).read_text()))
    reader = fastavro.schemaless_reader

    def decode(value: bytes) -> Any:
        buf = io.BytesIO(value)
        buf.seek(5)
        return reader(buf, schema, None)

    return decode


# -- the contenders, each run in a child process ------------------------------------------


def run_bare(a: argparse.Namespace, check: Check) -> None:
    """confluent-kafka's Consumer.consume(1000) + fastavro per value, no commits."""
    from confluent_kafka import Consumer

    decode = _decoder(a.schema_file)
    consumer = Consumer(
        {
            "bootstrap.servers": a.bootstrap,
            "group.id": a.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([a.topic])
    while True:
        messages: list[Any] = consumer.consume(1000, 1.0)  # Any: the stubs make value Optional
        for m in messages:
            if m.error() is None:
                v = decode(m.value())
                check(v["order_id"], v["customer_id"], v["quantity"])


def run_ferryman(a: argparse.Namespace, check: Check, batch: int | None) -> None:
    """A Service with an async handler per value (or per ``batch`` values)."""
    from ferryman.config import ServiceConfig
    from ferryman.service import Service
    from ferryman.topics import EventTopic

    topic = EventTopic(a.topic, OrderPlaced, partition_key="order_id", partitions=a.partitions)

    async def main() -> None:
        svc = Service(
            a.group,
            broker=f"kafka://{a.bootstrap}",
            registry=f"embedded:{a.registry}",
            config=ServiceConfig(create_topics=False, **json.loads(a.service_config or "{}")),
        )
        if batch is None:

            @svc.on(topic)
            async def one(e: OrderPlaced) -> None:
                check(e.order_id, e.customer_id, e.quantity)

        else:

            @svc.on(topic, batch=batch)
            async def many(events: list[OrderPlaced]) -> None:
                for e in events:
                    check(e.order_id, e.customer_id, e.quantity)

        await svc.start()
        await asyncio.Event().wait()

    asyncio.run(main())


def run_faststream(a: argparse.Namespace, check: Check, transport: str, batch: bool) -> None:
    """A FastStream subscriber; the body (bytes) decoded with fastavro in the handler."""
    decode = _decoder(a.schema_file)
    broker: Any
    if transport == "aiokafka":
        from faststream.kafka import KafkaBroker  # type: ignore[import-not-found, unused-ignore]

        broker = KafkaBroker(a.bootstrap)
    else:
        from faststream.confluent import (  # type: ignore[import-not-found, unused-ignore]
            KafkaBroker as ConfluentBroker,
        )

        broker = ConfluentBroker(a.bootstrap)

    options: dict[str, Any] = {"group_id": a.group, "auto_offset_reset": "earliest"}
    if batch:

        @broker.subscriber(a.topic, batch=True, max_records=BATCH, **options)  # type: ignore[untyped-decorator, misc, unused-ignore]
        async def many(bodies: list[bytes]) -> None:
            for body in bodies:
                v = decode(body)
                check(v["order_id"], v["customer_id"], v["quantity"])

    else:

        @broker.subscriber(a.topic, **options)  # type: ignore[untyped-decorator, misc, unused-ignore]
        async def one(body: bytes) -> None:
            v = decode(body)
            check(v["order_id"], v["customer_id"], v["quantity"])

    async def main() -> None:
        await broker.start()
        await asyncio.Event().wait()

    asyncio.run(main())


def run_quix(a: argparse.Namespace, check: Check) -> None:
    """A Quix Streams dataframe: bytes values, fastavro in ``update``."""
    from quixstreams import Application  # type: ignore[import-not-found, unused-ignore]

    decode = _decoder(a.schema_file)
    app = Application(
        broker_address=a.bootstrap,
        consumer_group=a.group,
        auto_offset_reset="earliest",
        use_changelog_topics=False,
        state_dir=tempfile.mkdtemp(prefix="quix-"),
    )
    topic = app.topic(a.topic, value_deserializer="bytes")
    sdf = app.dataframe(topic)

    def handle(value: bytes) -> None:
        v = decode(value)
        check(v["order_id"], v["customer_id"], v["quantity"])

    sdf.update(handle)
    app.run()


def run_faust(a: argparse.Namespace, check: Check) -> None:
    """A faust agent iterating its stream of raw values, fastavro per value."""
    import faust  # type: ignore[import-untyped, unused-ignore]

    decode = _decoder(a.schema_file)
    app = faust.App(
        a.group,
        broker=f"kafka://{a.bootstrap}",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        topic_disable_leader=True,
        store="memory://",
        datadir=tempfile.mkdtemp(prefix="faust-"),
    )
    topic = app.topic(a.topic, value_type=bytes, value_serializer="raw")

    @app.agent(topic)  # type: ignore[untyped-decorator, unused-ignore]
    async def handle(stream: Any) -> None:
        async for value in stream:
            v = decode(value)
            check(v["order_id"], v["customer_id"], v["quantity"])

    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()


# -- the producing side: each run writes --events records to a fresh topic of its own -----


def _produced(a: argparse.Namespace, start: float, cpu: float) -> None:
    """Print the result once every record is acknowledged: the clock stops here. Then read
    the topic back and check it holds exactly the events (each number once, its fields right)."""
    elapsed, used = time.perf_counter() - start, time.process_time() - cpu
    duplicates, bad, missing = _read_back(a)
    result = {
        "msgs_s": a.events / elapsed,
        "cpu_us": used / a.events * 1e6,
        "duplicates": duplicates,
        "bad": bad + missing,
    }
    print("RESULT " + json.dumps(result), flush=True)
    os._exit(0)


def _read_back(a: argparse.Namespace) -> tuple[int, int, int]:
    """(duplicates, bad values, missing events) of the produced topic, read from its start
    to its high watermarks with a bare consumer and decoded with fastavro."""
    from confluent_kafka import Consumer
    from confluent_kafka import TopicPartition as RdPartition

    reader = Consumer(
        {"bootstrap.servers": a.bootstrap, "group.id": a.group, "enable.auto.commit": False}
    )
    meta = reader.list_topics(a.produce_topic, timeout=10).topics[a.produce_topic].partitions
    ends = {
        p: reader.get_watermark_offsets(RdPartition(a.produce_topic, p), timeout=10)[1]
        for p in meta
    }
    reader.assign([RdPartition(a.produce_topic, p, 0) for p, end in ends.items() if end])
    decode = _decoder(a.schema_file)
    tally = _Tally(a.events)
    left = sum(ends.values())
    while left > 0:
        messages: list[Any] = reader.consume(1000, 5.0)  # Any: the stubs make value Optional
        if not messages:
            break
        for m in messages:
            if m.error() is not None or m.offset() >= ends[m.partition()]:
                continue
            left -= 1
            v = decode(m.value())
            tally(v["order_id"], v["customer_id"], v["quantity"])
    reader.close()
    return tally.duplicates, tally.bad, a.events - tally.distinct


class _Tally(Check):
    """A Check that only counts: reading a produced topic back is not timed, and ends at the
    high watermarks rather than at the last distinct event."""

    def finish(self) -> None:
        pass


def _avro_values(a: argparse.Namespace) -> tuple[list[dict[str, Any]], Callable[[Any], bytes]]:
    schema = fastavro.parse_schema(json.loads(Path(a.schema_file).read_text()))
    header = Path(a.schema_file + ".header").read_bytes()
    writer = fastavro.schemaless_writer

    def encode(value: Any) -> bytes:
        buf = io.BytesIO()
        buf.write(header)
        writer(buf, schema, value)
        return buf.getvalue()

    return [vars(_event(i)) for i in range(a.events)], encode


def run_bare_produce(a: argparse.Namespace, _: Check, headers: bool = False) -> None:
    """Producer.produce(value, key, on_delivery) with ferryman's producer settings, fastavro
    encoding per record, poll(0) per record, flush at the end; ``headers``: with the two
    headers ferryman puts on every record (a message id of 32 hex digits, and the source)."""
    from confluent_kafka import Producer

    from ferryman.broker.kafka import PRODUCER_DEFAULTS

    events, encode = _avro_values(a)
    source = a.group.encode()
    producer = Producer({"bootstrap.servers": a.bootstrap, **PRODUCER_DEFAULTS})
    failed = 0

    def on_delivery(err: Any, _: Any) -> None:
        nonlocal failed
        if err is not None:
            failed += 1

    topic = a.produce_topic
    start, cpu = time.perf_counter(), time.process_time()
    for e in events:
        value = encode(e)
        sent = (
            [("ferryman.message-id", os.urandom(16).hex().encode()), ("ferryman.source", source)]
            if headers
            else None
        )
        while True:
            try:
                producer.produce(
                    topic, value, e["order_id"].encode(), on_delivery=on_delivery, headers=sent
                )
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush()
    assert failed == 0, f"{failed} records not acknowledged"
    _produced(a, start, cpu)


def run_ferryman_emit(a: argparse.Namespace, _: Check, awaited: bool) -> None:
    """Service.emit of each event; awaited: every Delivery of a batch of BATCH awaited before
    the next batch; else never awaited, and flush() at the end."""
    from ferryman.config import ServiceConfig
    from ferryman.service import Service
    from ferryman.topics import EventTopic

    topic = EventTopic(a.produce_topic, OrderPlaced, partition_key="order_id", partitions=4)
    events = [_event(i) for i in range(a.events)]

    async def main() -> None:
        svc = Service(
            a.group,
            broker=f"kafka://{a.bootstrap}",
            registry=f"embedded:{a.registry}",
            config=ServiceConfig(create_topics=False),
        )
        svc.emit(topic, events[0])  # the first send looks the topic up and registers the schema
        assert svc.flush(30) == 0
        emit = svc.emit
        start, cpu = time.perf_counter(), time.process_time()
        if awaited:
            for i in range(1, len(events), BATCH):
                for d in [emit(topic, e) for e in events[i : i + BATCH]]:
                    await d
        else:
            for e in events[1:]:
                emit(topic, e)
        assert svc.flush(300) == 0
        _produced(a, start, cpu)

    asyncio.run(main())


LINGER_MS = 5
"""The producers' linger, as ferryman's (``PRODUCER_DEFAULTS``), wherever a peer takes one."""


def run_faststream_publish(a: argparse.Namespace, _: Check, transport: str, how: str) -> None:
    """FastStream's ``KafkaBroker.publish`` of each event (``how="one"``: each awaited, its
    acknowledgement included; ``"nowait"``: ``no_confirm=True``, the futures of each BATCH
    awaited before the next), or ``publish_batch`` of BATCH events at a time (``"batch"``)."""
    from faststream.kafka.response import (  # type: ignore[import-not-found, unused-ignore]
        KafkaResponse,
    )

    events, encode = _avro_values(a)
    settings: dict[str, Any] = {
        "acks": "all",
        "compression_type": "lz4",
        "linger_ms": LINGER_MS,
        "enable_idempotence": True,
    }
    broker: Any
    if transport == "aiokafka":
        from faststream.kafka import KafkaBroker  # type: ignore[import-not-found, unused-ignore]

        # aiokafka's batch is 16 KB by default, too small for BATCH events in one
        # publish_batch; 1 MB is librdkafka's batch.size default
        broker = KafkaBroker(a.bootstrap, max_batch_size=1_048_576, **settings)
    else:
        from faststream.confluent import (  # type: ignore[import-not-found, unused-ignore]
            KafkaBroker as ConfluentBroker,
        )

        broker = ConfluentBroker(a.bootstrap, **settings)
    topic = a.produce_topic

    async def main() -> None:
        await broker.start()
        first = events[0]  # the first send fetches the topic's metadata: not timed
        await broker.publish(encode(first), topic, key=first["order_id"].encode())
        publish = broker.publish
        start, cpu = time.perf_counter(), time.process_time()
        if how == "one":
            for e in events[1:]:
                await publish(encode(e), topic, key=e["order_id"].encode())
        elif how == "nowait":
            for i in range(1, len(events), BATCH):
                futures = [
                    await publish(encode(e), topic, key=e["order_id"].encode(), no_confirm=True)
                    for e in events[i : i + BATCH]
                ]
                for f in futures:
                    await f
        else:
            for i in range(1, len(events), BATCH):
                await broker.publish_batch(
                    *(
                        KafkaResponse(encode(e), key=e["order_id"].encode())
                        for e in events[i : i + BATCH]
                    ),
                    topic=topic,
                )
        _produced(a, start, cpu)  # every send above was awaited to its acknowledgement

    asyncio.run(main())


def run_quix_produce(a: argparse.Namespace, _: Check) -> None:
    """Quix Streams' ``Application.get_producer()``: ``produce(topic, value, key,
    on_delivery=...)`` per event (it polls after each), ``flush()`` at the end."""
    from quixstreams import Application  # type: ignore[import-not-found, unused-ignore]

    events, encode = _avro_values(a)
    app = Application(
        broker_address=a.bootstrap,
        consumer_group=a.group,
        state_dir=tempfile.mkdtemp(prefix="quix-"),
        producer_extra_config={
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": "lz4",
            "linger.ms": LINGER_MS,
        },
    )
    failed = 0

    def on_delivery(err: Any, _: Any) -> None:
        nonlocal failed
        if err is not None:
            failed += 1

    topic = a.produce_topic
    with app.get_producer() as producer:
        first = events[0]  # the first send connects and fetches metadata: not timed
        producer.produce(topic, encode(first), first["order_id"].encode(), on_delivery=on_delivery)
        producer.flush()
        produce = producer.produce
        start, cpu = time.perf_counter(), time.process_time()
        for e in events[1:]:
            produce(topic, encode(e), e["order_id"].encode(), on_delivery=on_delivery)
        producer.flush()
        assert failed == 0, f"{failed} records not acknowledged"
        _produced(a, start, cpu)


def run_faust_produce(a: argparse.Namespace, _: Check) -> None:
    """faust-streaming's ``topic.send(key=, value=)`` of each event, awaited as faust's docs
    show (it queues the record and returns its future), from an app task; the producer
    flushed at the end and every future checked."""
    import faust  # type: ignore[import-untyped, unused-ignore]

    events, encode = _avro_values(a)
    app = faust.App(
        a.group,
        broker=f"kafka://{a.bootstrap}",
        web_enabled=False,
        topic_disable_leader=True,
        store="memory://",
        datadir=tempfile.mkdtemp(prefix="faust-"),
        producer_acks=-1,
        producer_compression_type="lz4",
        producer_linger=LINGER_MS / 1000,
        consumer_auto_offset_reset="latest",
    )
    # a faust worker will not start without a subscription: an agent idles at the end of the
    # consuming side's topic
    idle = app.topic(a.topic, value_serializer="raw")

    @app.agent(idle)  # type: ignore[untyped-decorator, unused-ignore]
    async def nothing(stream: Any) -> None:
        async for _ in stream:
            pass

    topic = app.topic(
        a.produce_topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=a.partitions,
    )

    @app.task  # type: ignore[untyped-decorator, unused-ignore]
    async def produce() -> None:
        first = events[0]  # the first send fetches the topic's metadata: not timed
        await (await topic.send(key=first["order_id"].encode(), value=encode(first)))
        send = topic.send
        start, cpu = time.perf_counter(), time.process_time()
        futures = [await send(key=e["order_id"].encode(), value=encode(e)) for e in events[1:]]
        await app.producer.flush()
        for f in futures:
            await f  # raises for a record not acknowledged
        _produced(a, start, cpu)

    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()


PRODUCERS: dict[str, tuple[str, Callable[[argparse.Namespace, Check], None]]] = {
    "bare-produce": ("bare confluent-kafka `Producer.produce` + fastavro", run_bare_produce),
    "bare-produce-headers": (
        "the same with ferryman's two headers per record",
        lambda a, c: run_bare_produce(a, c, headers=True),
    ),
    "ferryman-emit-awaited": (
        f"ferryman `emit`, awaited in batches of {BATCH}",
        lambda a, c: run_ferryman_emit(a, c, True),
    ),
    "ferryman-emit-nowait": (
        "ferryman `emit`, never awaited, `flush()` at the end",
        lambda a, c: run_ferryman_emit(a, c, False),
    ),
    "quix-produce": ("Quix Streams `Producer.produce`", run_quix_produce),
    **{
        f"faststream-{transport}-{name}": (
            f"FastStream, {transport}, {label}",
            functools.partial(run_faststream_publish, transport=transport, how=how),
        )
        for transport in ("aiokafka", "confluent")
        for name, how, label in (
            ("publish", "one", "`publish` awaited one at a time"),
            ("nowait", "nowait", f"`publish(no_confirm=True)`, awaited in batches of {BATCH}"),
            ("publish-batch", "batch", f"`publish_batch` of {BATCH}"),
        )
    },
    "faust-produce": ("faust-streaming `topic.send`", run_faust_produce),
}

ONLY_BY_NAME = {"faststream-aiokafka-publish", "faststream-confluent-publish"}
"""Run only when named in ``--only``: a publish awaited one at a time makes ~130 records/s."""

CONTENDERS: dict[str, tuple[str, Callable[[argparse.Namespace, Check], None]]] = {
    "bare": ("bare confluent-kafka `consume(1000)` + fastavro", run_bare),
    "ferryman-one": (
        "ferryman Service, one value per call",
        lambda a, c: run_ferryman(a, c, None),
    ),
    "ferryman-batch": (
        f"ferryman Service, `batch={BATCH}`",
        lambda a, c: run_ferryman(a, c, BATCH),
    ),
    "quix": ("Quix Streams", run_quix),
    "faststream-aiokafka-batch": (
        f"FastStream, aiokafka, batch of {BATCH}",
        lambda a, c: run_faststream(a, c, "aiokafka", True),
    ),
    "faststream-confluent-batch": (
        f"FastStream, confluent, batch of {BATCH}",
        lambda a, c: run_faststream(a, c, "confluent", True),
    ),
    "faststream-aiokafka-one": (
        "FastStream, aiokafka, one at a time",
        lambda a, c: run_faststream(a, c, "aiokafka", False),
    ),
    "faststream-confluent-one": (
        "FastStream, confluent, one at a time",
        lambda a, c: run_faststream(a, c, "confluent", False),
    ),
    "faust": ("faust-streaming", run_faust),
}


# -- the parent: produce once, run the rounds, print the table -----------------------------


def produce(bootstrap: str, registry: str, topic: str, partitions: int, n: int) -> None:
    from ferryman.broker import open_broker
    from ferryman.service import Service
    from ferryman.topics import EventTopic

    event_topic = EventTopic(topic, OrderPlaced, partition_key="order_id", partitions=partitions)
    svc = Service("bench-peers-producer", broker=f"kafka://{bootstrap}", registry=registry)
    opened = open_broker(f"kafka://{bootstrap}")
    admin = opened.admin()
    for spec in svc.topic_specs() or []:
        admin.create_topic(spec, exist_ok=True)
    from ferryman.records import TopicSpec

    admin.create_topic(TopicSpec(topic, partitions), exist_ok=True)
    admin.close()
    opened.close()
    for i in range(n):
        svc.emit(event_topic, _event(i))
    assert svc.flush(300) == 0
    asyncio.run(svc.stop())


def schema_of(registry: str, topic: str) -> tuple[str, bytes]:
    """The topic's value schema, and the 5-byte wire-format header of its id."""
    from ferryman.schema import open_registry

    reg = open_registry(registry)
    try:
        latest = reg.latest(f"{topic}-value")
    finally:
        reg.close()
    text = latest.schema
    header = b"\0" + latest.schema_id.to_bytes(4, "big")
    return (text if isinstance(text, str) else json.dumps(text)), header


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("confluent-kafka", "fastavro", "faststream", "aiokafka", "faust-streaming"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def child(args: argparse.Namespace) -> None:
    check = Check(args.events)
    {**CONTENDERS, **PRODUCERS}[args.child][1](args, check)


def fresh_topic(bootstrap: str, partitions: int) -> str:
    """A new topic of ``partitions`` partitions, for one producing run."""
    from ferryman.broker import open_broker
    from ferryman.records import TopicSpec

    name = f"bench.peers.produce.{uuid.uuid4().hex[:8]}"
    opened = open_broker(f"kafka://{bootstrap}")
    admin = opened.admin()
    try:
        admin.create_topic(TopicSpec(name, partitions))
    finally:
        admin.close()
        opened.close()
    return name


def run_one(args: argparse.Namespace, name: str, python: str, workdir: str) -> dict[str, Any]:
    env = None
    if name.endswith("@before"):  # ferryman from another source tree (--before-src)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([args.before_src, str(Path(__file__).parent.parent)]),
        }
    cmd = [
        python,
        __file__,
        "--child",
        name.removesuffix("@before"),
        "--bootstrap",
        args.bootstrap,
        "--events",
        str(args.events),
        "--partitions",
        str(args.partitions),
        "--topic",
        args.topic,
        "--group",
        f"bench-{name.replace('@', '-')}-{uuid.uuid4().hex[:8]}",
        "--registry",
        str(Path(workdir) / "registry.db"),
        "--schema-file",
        str(Path(workdir) / "schema.json"),
        "--service-config",
        args.service_config,
    ]
    if name.removesuffix("@before") in PRODUCERS:
        cmd += ["--produce-topic", fresh_topic(args.bootstrap, args.partitions)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"no result within {args.timeout:g}s"}
    for line in (out.stdout + out.stderr).splitlines():  # faust logs what a child prints
        if "RESULT {" in line:
            result: dict[str, Any] = json.loads(line[line.index("RESULT {") + 7 :])
            if result["duplicates"] or result["bad"]:
                result["error"] = f"{result['duplicates']} duplicates, {result['bad']} bad values"
            return result
    return {"error": f"exit {out.returncode}: {out.stderr.strip()[-400:]}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated contenders (default: all but "
        + ", ".join(sorted(ONLY_BY_NAME))
        + ", which take minutes per 10,000 records)",
    )
    parser.add_argument(
        "--quix-python",
        default=sys.executable,
        help="the Python to run Quix Streams with (it pins confluent-kafka < 2.13)",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per run")
    parser.add_argument("--topic", default="", help="reuse this topic (with --workdir)")
    parser.add_argument("--workdir", default="", help="keeps registry.db and schema.json")
    parser.add_argument(
        "--service-config",
        default="",
        help='ServiceConfig overrides as JSON, e.g. {"poll_records": 500}',
    )
    parser.add_argument(
        "--side",
        choices=["consume", "produce"],
        default="consume",
        help="consume the topic, or produce --events records to a fresh topic per run",
    )
    parser.add_argument(
        "--before-src",
        default="",
        help="a ferryman src/ directory of an earlier version: its runs are added as '@before' rows",
    )
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--produce-topic", default="", help=argparse.SUPPRESS)
    parser.add_argument("--group", default="", help=argparse.SUPPRESS)
    parser.add_argument("--registry", default="", help=argparse.SUPPRESS)
    parser.add_argument("--schema-file", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    table = CONTENDERS if args.side == "consume" else PRODUCERS
    names = [n for n in args.only.split(",") if n] or [n for n in table if n not in ONLY_BY_NAME]
    unknown = [n for n in names if n not in table]
    if unknown:
        parser.error(f"unknown contender(s) {unknown}; choose from {', '.join(table)}")
    if args.before_src:
        names += [f"{n}@before" for n in names if n.startswith("ferryman")]
    workdir = args.workdir or tempfile.mkdtemp(prefix="ferryman-peers-")
    registry = f"embedded:{Path(workdir) / 'registry.db'}"
    if not args.topic:
        args.topic = f"bench.peers.{uuid.uuid4().hex[:8]}"
        t0 = time.perf_counter()
        produce(args.bootstrap, registry, args.topic, args.partitions, args.events)
        print(f"produced {args.events} events to {args.topic} in {time.perf_counter() - t0:.1f}s")
    schema_text, header = schema_of(registry, args.topic)
    (Path(workdir) / "schema.json").write_text(schema_text)
    (Path(workdir) / "schema.json.header").write_bytes(header)
    results: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            python = args.quix_python if name.startswith("quix") else sys.executable
            res = run_one(args, name, python, workdir)
            results[name].append(res)
            shown = res.get("error") or f"{res['msgs_s']:,.0f} msgs/s {res['cpu_us']:.1f} us"
            print(f"round {r + 1} {name}: {shown}", flush=True)
    print(
        f"\n{args.events} events, {args.partitions} partitions, best of {args.rounds} rounds; "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {versions()}\n"
    )
    print(
        "| contender | msgs/s (best) | us CPU/msg | vs bare | msgs/s (median) | vs bare |\n"
        "|---|---:|---:|---:|---:|---:|"
    )
    good = {n: [x for x in rs if "error" not in x] for n, rs in results.items()}
    bare_runs = [x["msgs_s"] for x in good.get(next(iter(table)), [])]
    bare = max(bare_runs, default=None)
    bare_median = statistics.median(bare_runs) if bare_runs else None
    rows = []
    for name in names:
        label = table[name.removesuffix("@before")][0]
        if name.endswith("@before"):
            label += ", before (--before-src)"
        if not good[name]:
            errors = "; ".join(x["error"] for x in results[name])
            rows.append((0.0, f"| {label} | FAILED: {errors[:200]} | | | | |"))
            continue
        best = max(x["msgs_s"] for x in good[name])
        cpu = min(x["cpu_us"] for x in good[name])
        median = statistics.median(x["msgs_s"] for x in good[name])
        ratio = f"{best / bare:.2f}x" if bare else "-"
        ratio_median = f"{median / bare_median:.2f}x" if bare_median else "-"
        failed = len(results[name]) - len(good[name])
        note = f" ({failed} run(s) FAILED)" if failed else ""
        rows.append(
            (
                best,
                f"| {label}{note} | {best:,.0f} | {cpu:.1f} | {ratio} | {median:,.0f} | "
                f"{ratio_median} |",
            )
        )
    for _, row in sorted(rows, key=lambda r: -r[0]):
        print(row)


if __name__ == "__main__":
    main()
