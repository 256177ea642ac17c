"""The outbox keeps the trace context of the transaction that wrote a record (the relay sends
its headers), and the outbox gauges follow the backlog to 0."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from tests.observability.conftest import Tracer
from tests.runtime.conftest import FAST, Env, run
from tests.waiting import eventually

from ferryman.service import Service
from ferryman.topics import EventTopic


@dataclass
class Placed:
    order_id: int


def test_the_relay_carries_the_writers_trace_and_the_backlog_drains(
    env: Env, tracer: Tracer, tmp_path: Path
) -> None:
    placed = EventTopic(env.name("placed"), Placed, partitions=1)
    seen: list[Placed] = []

    async def main() -> float | None:
        orders = Service(
            env.name("orders"),
            broker=env.broker,
            registry=env.registry,
            database=f"sqlite:///{tmp_path / 'orders.db'}",
            config=replace(FAST, tracer_provider=tracer.provider),
        )
        billing = env.service("billing", tracer_provider=tracer.provider)

        @billing.on(placed)
        async def got(p: Placed) -> None:
            seen.append(p)

        async with orders, billing:
            with (
                tracer.provider.get_tracer("test").start_as_current_span("place order"),
                orders.database.sessions() as session,
                session.begin(),
            ):
                orders.outbox(session).emit(placed, Placed(7))
            await eventually(lambda: seen, env.timeout, "billing got the outbox's event")
            registry = orders.metrics_registry
            labels = {"service": orders.name}
            await eventually(
                lambda: registry.get_sample_value("ferryman_outbox_backlog_rows", labels) == 0,
                env.timeout,
                "the outbox backlog at 0",
            )
            oldest: float | None = registry.get_sample_value(
                "ferryman_outbox_oldest_seconds", labels
            )
            return oldest

    assert run(main()) == 0
    assert seen == [Placed(7)]
    finished = tracer.spans.get_finished_spans()
    root = next(s for s in finished if s.name == "place order")
    send = next(s for s in finished if s.name == f"send {placed.name}")
    process = next(s for s in finished if s.name == f"process {placed.name}")
    assert send.parent is not None
    assert send.parent.span_id == root.context.span_id
    assert process.parent is not None
    assert process.parent.span_id == send.context.span_id
    assert process.context.trace_id == root.context.trace_id
