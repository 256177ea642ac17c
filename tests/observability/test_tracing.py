"""One trace across services: emit -> handler -> request -> responder, and handler -> emit ->
handler, with the OpenTelemetry SDK exporting to memory. Every span has the root's trace id
and the parent the flow says."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from tests.observability.conftest import Tracer
from tests.runtime.conftest import Env, run
from tests.waiting import eventually

from ferryman.topics import EventTopic, RequestTopic


@dataclass
class Placed:
    order_id: str
    qty: int


@dataclass
class Quote:
    qty: int


@dataclass
class Price:
    total: float


@dataclass
class Priced:
    order_id: str
    total: float


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"{name}: {[s.name for s in spans]}"
    return found[0]


def parent_of(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def test_one_trace_spans_producer_consumer_request_and_reply(env: Env, tracer: Tracer) -> None:
    placed = EventTopic(env.name("orders.placed"), Placed, partition_key="order_id")
    priced = EventTopic(env.name("orders.priced"), Priced, partition_key="order_id")
    quote = RequestTopic(env.name("pricing.quote"), Quote, reply=Price)
    done: list[Priced] = []

    async def main() -> None:
        shop = env.service("shop", tracer_provider=tracer.provider)
        orders = env.service("orders", tracer_provider=tracer.provider)
        pricing = env.service("pricing", tracer_provider=tracer.provider)
        billing = env.service("billing", tracer_provider=tracer.provider)

        @pricing.responder(quote)
        async def price(q: Quote) -> Price:
            return Price(q.qty * 2.5)

        @orders.on(placed)
        async def on_placed(p: Placed) -> None:
            reply = await orders.request(quote, Quote(p.qty), timeout=env.timeout)
            await orders.emit(priced, Priced(p.order_id, reply.total))

        @billing.on(priced)
        def on_priced(p: Priced) -> None:  # a sync handler: it runs in a thread
            done.append(p)

        for svc in (pricing, orders, billing):
            await svc.start()
        try:
            with tracer.provider.get_tracer("test").start_as_current_span("checkout"):
                await shop.emit(placed, Placed("o-1", 4))
            await eventually(lambda: done, env.timeout, "billing handled the priced event")
        finally:
            for svc in (shop, orders, pricing, billing):
                await svc.stop()

    run(main())
    assert done == [Priced("o-1", 10.0)]
    finished = tracer.spans.get_finished_spans()
    root = by_name(finished, "checkout")
    send_placed = by_name(finished, f"send {placed.name}")
    process_placed = by_name(finished, f"process {placed.name}")
    send_quote = by_name(finished, f"send {quote.name}")
    process_quote = by_name(finished, f"process {quote.name}")
    send_priced = by_name(finished, f"send {priced.name}")
    process_priced = by_name(finished, f"process {priced.name}")
    flow = [
        root,
        send_placed,
        process_placed,
        send_quote,
        process_quote,
        send_priced,
        process_priced,
    ]
    trace_ids = {s.context.trace_id for s in flow}
    assert trace_ids == {root.context.trace_id}
    assert parent_of(send_placed) == root.context.span_id
    assert parent_of(process_placed) == send_placed.context.span_id
    assert parent_of(send_quote) == process_placed.context.span_id
    assert parent_of(process_quote) == send_quote.context.span_id
    assert parent_of(send_priced) == process_placed.context.span_id
    assert parent_of(process_priced) == send_priced.context.span_id
    assert send_placed.kind == SpanKind.PRODUCER
    assert process_placed.kind == SpanKind.CONSUMER
    attributes = process_placed.attributes or {}
    assert attributes["messaging.destination.name"] == placed.name
    assert attributes["messaging.operation.type"] == "process"
    assert attributes["messaging.consumer.group.name"] == env.name("orders")
    assert isinstance(attributes["messaging.message.id"], str)
    assert (send_placed.attributes or {})["messaging.system"] in ("ferryman", "kafka")


def _active_in_a_fresh_process(code: str, **env: str) -> list[str]:
    """What ``code`` prints, run where no tracer provider was set yet (one per process)."""
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    )
    return out.stdout.split()


def test_a_global_provider_set_after_the_service_is_used_from_then_on() -> None:
    code = (
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from ferryman.observability.tracing import tracing_for\n"
        "tracing = tracing_for('svc', 'kafka')\n"
        "print(tracing.active(), tracing.active())\n"
        "trace.set_tracer_provider(TracerProvider())\n"
        "print(tracing.active(), tracing.active())\n"
    )
    assert _active_in_a_fresh_process(code) == ["False", "False", "True", "True"]


def test_a_provider_named_in_the_environment_is_used() -> None:
    code = (
        "from ferryman.observability.tracing import tracing_for\n"
        "print(tracing_for('svc', 'kafka').active())\n"
    )
    assert _active_in_a_fresh_process(code) == ["False"]
    named = {"OTEL_PYTHON_TRACER_PROVIDER": "sdk_tracer_provider"}
    assert _active_in_a_fresh_process(code, **named) == ["True"]
