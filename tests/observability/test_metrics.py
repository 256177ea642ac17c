"""The metrics a service keeps, read from its own registry: consumed, produced, retried and
dead-lettered records; handler times; request latency, timeouts, remote errors, late replies;
lag; and metrics switched off."""

from __future__ import annotations

import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from tests.runtime.conftest import FAST, Env, run
from tests.waiting import eventually

from ferryman.config import ServiceConfig
from ferryman.errors import ConfigError, RemoteError, RequestTimeout
from ferryman.observability.metrics import Metrics, NoMetrics
from ferryman.service import Service
from ferryman.topics import EntityTopic, EventTopic, RequestTopic


@dataclass
class Job:
    n: int


@dataclass
class Done:
    n: int


def sample(svc: Service, name: str, **labels: str) -> float | None:
    registry = svc.metrics_registry
    assert isinstance(registry, CollectorRegistry)
    value: float | None = registry.get_sample_value(name, {"service": svc.name, **labels})
    return value


def test_records_consumed_produced_retried_and_dead_lettered(env: Env) -> None:
    jobs = EventTopic(env.name("jobs"), Job, partitions=1)
    seen: list[int] = []

    async def main() -> tuple[Service, Service]:
        producer, worker = env.service("producer"), env.service("worker", retries=2)

        @worker.on(jobs)
        def work(job: Job) -> None:
            seen.append(job.n)
            if job.n == 1:
                raise ValueError("job 1 always fails")

        async with worker, producer:
            for n in range(3):
                await producer.emit(jobs, Job(n))
            where = {"group": worker.group, "topic": jobs.name, "partition": "0"}
            await eventually(
                lambda: sample(worker, "ferryman_records_consumed_total", **where) == 3,
                env.timeout,
                "3 records consumed",
            )
            lag = worker.metrics_registry.get_sample_value(
                "ferryman_consumer_lag_records", {"service": worker.name, **where}
            )
            await eventually(
                lambda: (
                    worker.metrics_registry.get_sample_value(
                        "ferryman_consumer_lag_records", {"service": worker.name, **where}
                    )
                    == 0
                ),
                env.timeout,
                f"the lag falls to 0 (was {lag})",
            )
        return producer, worker

    producer, worker = run(main())
    where = {"group": worker.group, "topic": jobs.name, "partition": "0"}
    assert sample(producer, "ferryman_records_produced_total", topic=jobs.name) == 3
    assert sample(worker, "ferryman_records_dead_lettered_total", **where) == 1
    assert sample(worker, "ferryman_handler_retries_total", **where) == 2
    assert seen.count(1) == 3  # the first attempt and two retries
    calls = sample(
        worker, "ferryman_handler_duration_seconds_count", group=worker.group, topic=jobs.name
    )
    assert calls is not None
    assert calls >= 3  # every run timed, the retried ones too
    assert sample(worker, "ferryman_partitions_assigned", group=worker.group) == 0  # stopped


def test_request_latency_timeouts_remote_errors_and_late_replies(env: Env) -> None:
    topic = RequestTopic(env.name("double"), Job, reply=Done, partitions=1)
    release = threading.Event()

    async def main() -> Service:
        server, client = env.service("server"), env.service("client")

        @server.responder(topic)
        def double(job: Job) -> Done:
            if job.n < 0:
                raise ValueError("negative")
            if job.n == 99:
                release.wait(env.timeout)
            return Done(job.n * 2)

        async with server, client:
            assert await client.request(topic, Job(2), timeout=env.timeout) == Done(4)
            with pytest.raises(RemoteError):
                await client.request(topic, Job(-1), timeout=env.timeout)
            with pytest.raises(RequestTimeout):
                await client.request(topic, Job(99), timeout=0.2)
            release.set()
            await eventually(
                lambda: sample(client, "ferryman_late_replies_total", topic=topic.name) == 1,
                env.timeout,
                "a late reply",
            )
        return client

    client = run(main())
    by_topic = {"topic": topic.name}
    assert (
        sample(client, "ferryman_request_duration_seconds_count", outcome="reply", **by_topic) == 1
    )
    assert (
        sample(client, "ferryman_request_duration_seconds_count", outcome="error", **by_topic) == 1
    )
    assert sample(client, "ferryman_request_remote_errors_total", **by_topic) == 1
    assert sample(client, "ferryman_request_timeouts_total", **by_topic) == 1


def test_services_have_registries_of_their_own_or_a_given_one(env: Env) -> None:
    a, b = env.service("a"), env.service("b")
    assert isinstance(a.metrics, Metrics)
    assert a.metrics_registry is not b.metrics_registry
    shared = CollectorRegistry()
    c = env.service("c", metrics_registry=shared)
    assert c.metrics_registry is shared
    off = env.service("off", metrics=False)
    assert isinstance(off.metrics, NoMetrics)
    assert off.metrics_registry is None
    with pytest.raises(ConfigError, match=r"metrics_registry=.*CollectorRegistry"):
        ServiceConfig(metrics_registry="prometheus")
    with pytest.raises(ConfigError, match="metrics='yes': write True or False"):
        ServiceConfig(metrics="yes")  # type: ignore[arg-type]


def test_without_opentelemetry_tracing_is_off() -> None:
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "from ferryman.service import Service\n"
        "svc = Service('plain', broker='embedded:/tmp/never-opened.db')\n"
        "print(svc._conn.tracing)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "None"


@dataclass
class Customer:
    id: int
    name: str


def test_mirror_lag_gauges_fall_to_zero(env: Env, tmp_path: Path) -> None:
    customers = EntityTopic(env.name("customers"), Customer, key="id", partitions=2)

    async def main() -> tuple[float | None, float | None]:
        owner = env.service("owner")
        copy = Service(
            env.name("copy"),
            broker=env.broker,
            registry=env.registry,
            database=f"sqlite:///{tmp_path / 'copy.db'}",
            config=FAST,
        )
        table = copy.mirror(customers).table.name
        labels = {"service": copy.name, "topic": customers.name}
        async with owner, copy:
            for i in range(20):
                await owner.publish(customers, Customer(i, f"c{i}"))
            await eventually(
                lambda: (
                    copy.metrics_registry.get_sample_value("ferryman_mirror_lag_records", labels)
                    == 0
                    and copy.lag()[customers.name].offsets == 0
                ),
                env.timeout,
                "the mirror caught up",
            )
            records = copy.metrics_registry.get_sample_value("ferryman_mirror_lag_records", labels)
            seconds = copy.metrics_registry.get_sample_value("ferryman_mirror_lag_seconds", labels)
            applied = {**labels, "table": table}

            def count() -> float | None:
                value: float | None = copy.metrics_registry.get_sample_value(
                    "ferryman_mirror_records_applied_total", applied
                )
                return value

            await eventually(lambda: count() == 20, env.timeout, f"20 applied (got {count()})")
            for i in range(5):  # tombstones are applied records too
                await owner.delete(customers, i)
            await eventually(lambda: count() == 25, env.timeout, f"25 applied (got {count()})")
            return records, seconds

    assert run(main()) == (0, 0)
