"""Request/response round trip: p50/p99 latency one at a time, and requests/s with 64 in flight.

Run: ``python bench/rpc_roundtrip.py`` (embedded broker in a temp dir) or
``python bench/rpc_roundtrip.py --broker kafka://127.0.0.1:9092``.

The responder is a Service in a child process (its own interpreter and GIL, as in production);
the requester is a Service in this process. A round trip is timed from ``await request(...)``
to the decoded reply: request produce, the responder's poll, decode, handler, reply produce,
the requester's reply poll and the hand-back to the event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from pathlib import Path

from ferryman.config import ServiceConfig
from ferryman.service import Service
from ferryman.topics import RequestTopic


@dataclass
class QuoteRequest:
    sku: str
    quantity: int


@dataclass
class Quote:
    sku: str
    total: float


def topic_named(name: str) -> RequestTopic[QuoteRequest, Quote]:
    return RequestTopic(name, QuoteRequest, reply=Quote, partitions=4, reply_partitions=4)


def responder(
    broker: str,
    registry: str,
    name: str,
    config: ServiceConfig,
    ready: Event,
    stop: Event,
) -> None:
    async def main() -> None:
        svc = Service("bench-pricing", broker=broker, registry=registry, config=config)

        @svc.responder(topic_named(name))
        async def price(req: QuoteRequest) -> Quote:
            return Quote(req.sku, 2.5 * req.quantity)

        async with svc:
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.1)

    asyncio.run(main())


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def measure(
    broker: str, registry: str, name: str, config: ServiceConfig, sequential: int, total: int
) -> None:
    topic = topic_named(name)
    async with Service("bench-orders", broker=broker, registry=registry, config=config) as svc:
        for _ in range(50):  # warm-up: schemas registered, reply partition assigned, caches hot
            await svc.request(topic, QuoteRequest("kettle", 1), timeout=30)

        latencies = []
        for i in range(sequential):
            t0 = time.perf_counter()
            await svc.request(topic, QuoteRequest("kettle", i % 9 + 1), timeout=30)
            latencies.append((time.perf_counter() - t0) * 1000)
        print(
            f"1 in flight:  p50 {percentile(latencies, 50):.2f} ms  "
            f"p99 {percentile(latencies, 99):.2f} ms  "
            f"mean {statistics.fmean(latencies):.2f} ms  ({sequential} requests)"
        )

        limit = asyncio.Semaphore(64)
        loaded: list[float] = []

        async def one(i: int) -> None:
            async with limit:
                t0 = time.perf_counter()
                await svc.request(topic, QuoteRequest("mug", i % 9 + 1), timeout=60)
                loaded.append((time.perf_counter() - t0) * 1000)

        t0, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one(i) for i in range(total)))
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu
        print(
            f"64 in flight: {total / elapsed:,.0f} requests/s  "
            f"p50 {percentile(loaded, 50):.2f} ms  p99 {percentile(loaded, 99):.2f} ms  "
            f"({total} requests); requester CPU {cpu / total * 1e6:.0f} us/request; "
            f"late replies: {svc.late_replies}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--broker", default=None, help="broker URL (default: embedded, temp dir)")
    parser.add_argument("--sequential", type=int, default=2000)
    parser.add_argument("--total", type=int, default=10000)
    parser.add_argument(
        "--producer",
        action="append",
        default=[],
        metavar="PROP=VALUE",
        help="producer property for both services, e.g. linger.ms=0 (repeatable)",
    )
    args = parser.parse_args()
    config = ServiceConfig(producer_config=dict(p.split("=", 1) for p in args.producer))
    with tempfile.TemporaryDirectory(prefix="ferryman-bench-") as tmp:
        broker = args.broker or f"embedded:{Path(tmp) / 'broker.db'}"
        registry = f"embedded:{Path(tmp) / 'registry.db'}"
        name = f"bench.quote.{uuid.uuid4().hex[:6]}"
        ctx = mp.get_context("spawn")
        ready, stop = ctx.Event(), ctx.Event()
        child = ctx.Process(target=responder, args=(broker, registry, name, config, ready, stop))
        child.start()
        try:
            if not ready.wait(120):
                raise SystemExit("the responder did not start within 120 s")
            print(f"backend={broker.split(':', 1)[0]} producer_config={config.producer_config}")
            asyncio.run(measure(broker, registry, name, config, args.sequential, args.total))
        finally:
            stop.set()
            child.join(60)


if __name__ == "__main__":
    main()
