"""The cost of metrics and tracing on the Service benchmark: events/s through a Service
handler with metrics off, on (the default), and on with tracing, in one run.

Run: ``python bench/observability.py`` (embedded broker in a temp dir) or with
``--broker kafka://127.0.0.1:9092``; ``--events N``, ``--rounds N`` (best of N per setting,
the settings interleaved so that a noisy neighbour hits them alike). Wall-clock rates
swing on a shared machine; CPU time per event in this process is the steadier figure.

The Service and the events are those of bench/service_events.py: N Avro events on 4
partitions, an async handler that counts, each round in a fresh consumer group. Tracing is
measured as installed without an SDK (the OpenTelemetry API's no-op tracer: what a service
pays for having ``opentelemetry-api`` around) and, with ``--sdk``, with the SDK recording
every span into a no-op exporter.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ferryman.broker import open_broker
from ferryman.config import ServiceConfig
from ferryman.observability.metrics import Metrics
from ferryman.records import TopicPartition
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


def produce(broker: str, registry: str, topic: EventTopic[OrderPlaced], n: int) -> None:
    svc = Service("bench-producer", broker=broker, registry=registry)
    for i in range(n):
        svc.emit(
            topic, OrderPlaced(f"o-{i}", i % 997, "kettle", 1 + i % 5, 24.5 * (1 + i % 5), "x" * 40)
        )
    assert svc.flush(300) == 0
    asyncio.run(svc.stop())


def consume(
    broker: str, registry: str, topic: EventTopic[OrderPlaced], n: int, **config: Any
) -> tuple[float, float]:
    """Events per second through a Service handler with ``config``, and CPU us per event."""

    async def main() -> tuple[float, float]:
        svc = Service(
            f"bench-obs-{uuid.uuid4().hex[:6]}",
            broker=broker,
            registry=registry,
            config=ServiceConfig(**config),
        )
        count = 0
        done = asyncio.Event()

        @svc.on(topic)
        async def handle(event: OrderPlaced) -> None:
            nonlocal count
            count += 1
            if count == n:
                done.set()

        opened = open_broker(broker)  # topic creation is not what is measured
        admin = opened.admin()
        for spec in svc.topic_specs():
            admin.create_topic(spec, exist_ok=True)
        admin.close()
        opened.close()
        start, cpu = time.perf_counter(), time.process_time()
        await svc.start()
        await done.wait()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        await svc.stop()
        return n / elapsed, cpu / n * 1e6

    return asyncio.run(main())


def hooks_per_record(runs: int = 200_000, run_length: int = 64) -> float:
    """Microseconds per record that the consumer loop's metric hooks cost, by themselves: a
    ``consumed`` and a ``handler_run`` per run of ``run_length`` records, as the loop calls them."""
    metrics = Metrics("bench")
    tp = TopicPartition("bench.hooks", 0)
    rows = [("bench.hooks", 0, i, None, b"", (), 1_700_000_000_000) for i in range(run_length)]
    start = time.perf_counter()
    for _ in range(runs):
        metrics.consumed("bench", tp, rows)
        metrics.handler_run("bench", "bench.hooks", 0.001, run_length)
    return (time.perf_counter() - start) / (runs * run_length) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--broker", default=None, help="broker URL (default: embedded, temp dir)")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--sdk", action="store_true", help="also trace with the OpenTelemetry SDK recording"
    )
    args = parser.parse_args()
    settings: dict[str, dict[str, Any]] = {
        "metrics off, tracing off": {"metrics": False, "tracing": False},
        "metrics on, tracing off": {"metrics": True, "tracing": False},
    }
    try:
        import opentelemetry.trace  # noqa: F401

        settings["metrics on, tracing on (API, no SDK)"] = {"metrics": True, "tracing": True}
    except ImportError:
        print("opentelemetry-api is not installed: tracing not measured")
    with tempfile.TemporaryDirectory(prefix="ferryman-bench-") as tmp:
        broker = args.broker or f"embedded:{Path(tmp) / 'broker.db'}"
        registry = f"embedded:{Path(tmp) / 'registry.db'}"
        topic = EventTopic(
            f"bench.obs.{uuid.uuid4().hex[:6]}", OrderPlaced, partition_key="order_id", partitions=4
        )
        produce(broker, registry, topic, args.events)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in settings}
        for _ in range(args.rounds):
            for name, config in settings.items():
                results[name].append(consume(broker, registry, topic, args.events, **config))
        if args.sdk:
            from opentelemetry import trace
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter

            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(SpanExporter()))
            trace.set_tracer_provider(provider)
            name = "metrics on, tracing on (SDK recording)"
            results[name] = [
                consume(broker, registry, topic, args.events, metrics=True, tracing=True)
                for _ in range(args.rounds)
            ]
        hooks = hooks_per_record()
        kind = broker.split(":", 1)[0]
        print(f"metric hooks alone: {hooks:.3f} us per record (runs of 64)")
        print(f"backend={kind} events={args.events} partitions=4 best of {args.rounds}")
        base = max(r for r, _ in results["metrics off, tracing off"])
        base_cpu = min(c for _, c in results["metrics off, tracing off"])
        for name, runs in results.items():
            best, cpu = max(r for r, _ in runs), min(c for _, c in runs)
            print(
                f"{name:<40} {best:>9,.0f} events/s {best / base:6.3f}x   "
                f"{cpu:5.1f} us CPU/event {base_cpu / cpu:6.3f}x"
            )


if __name__ == "__main__":
    main()
