"""A real Prometheus scrapes a service run by ``ferryman run --http-port``.

The service's handler is slowed so that a lag builds up: Prometheus's HTTP API must show the
consumed counter at the count produced, a lag above 0 in the range it scraped, and the lag at
0 once the service caught up.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.observability import apps
from tests.registry_server import free_port
from tests.waiting import wait_until

from ferryman.service import Service
from ferryman.topics import EventTopic

pytestmark = pytest.mark.prometheus
RECORDS = 300
HERE = Path(__file__).parent


def query(prometheus: str, promql: str) -> list[dict[str, object]]:
    """The instant vector ``promql`` evaluates to now."""
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert answer["status"] == "success", answer
    result: list[dict[str, object]] = answer["data"]["result"]
    return result


def value(prometheus: str, promql: str) -> float | None:
    result = query(prometheus, promql)
    if not result:
        return None
    sample = result[0]["value"]
    assert isinstance(sample, list)
    return float(sample[1])


@pytest.fixture
def served(tmp_path: Path, prometheus: tuple[str, Path]) -> Iterator[tuple[str, str, int]]:
    """``ferryman run apps:meter --http-port P``, a Prometheus target labelled with a test id."""
    suffix = uuid.uuid4().hex[:10]
    port = free_port()
    env = {
        **os.environ,
        "FERRYMAN_BROKER": f"embedded:{tmp_path / 'broker.db'}",
        "FERRYMAN_REGISTRY": f"embedded:{tmp_path / 'registry.db'}",
        "OBS_SUFFIX": suffix,
        "OBS_HANDLER_SECONDS": "0.02",
        "PYTHONPATH": os.pathsep.join([str(HERE.parents[1]), *sys.path]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", "from ferryman.cli import main; main()", "run",
         "tests.observability.apps:meter", "--http-port", str(port)],
        env=env,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    target = prometheus[1] / f"{suffix}.json"
    try:
        wait_until(
            lambda: (
                httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code == 200
            ),
            60,
            "the service to be ready",
            ignore=(httpx.HTTPError,),
        )
        target.write_text(
            json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": {"test": suffix}}])
        )
        yield suffix, str(tmp_path), port
    finally:
        target.unlink(missing_ok=True)
        proc.terminate()
        _, err = proc.communicate(timeout=30)
        if proc.returncode not in (0, -15):
            print(err.decode(errors="replace"), file=sys.stderr)


def test_prometheus_scrapes_a_counter_that_moves_and_a_lag_that_falls_to_zero(
    prometheus: tuple[str, Path], served: tuple[str, str, int]
) -> None:
    url = prometheus[0]
    suffix, where, _ = served
    consumed = f'sum(ferryman_records_consumed_total{{test="{suffix}"}})'
    lag = f'sum(ferryman_consumer_lag_records{{test="{suffix}"}})'
    wait_until(lambda: value(url, lag) == 0, 60, "Prometheus to scrape the idle service")

    producer = Service(
        "obs-producer",
        broker=f"embedded:{where}/broker.db",
        registry=f"embedded:{where}/registry.db",
    )
    topic = EventTopic(f"obs.readings.{suffix}", apps.Reading, partition_key="sensor", partitions=2)
    for i in range(RECORDS):
        producer.emit(topic, apps.Reading(f"s{i % 7}", float(i)))
    assert producer.flush(30) == 0
    asyncio.run(producer.stop())

    # 300 records at 20 ms on two partitions take about 3 s: several scrapes see the lag.
    wait_until(lambda: value(url, consumed) == RECORDS, 90, f"{consumed} == {RECORDS}")
    wait_until(lambda: value(url, lag) == 0, 60, f"{lag} back to 0")
    highest = value(url, f"max_over_time({lag}[5m:1s])")
    assert highest is not None
    assert highest > 0, "no scrape saw the lag the slow handler built"
    seconds = value(url, f'max(ferryman_consumer_lag_seconds{{test="{suffix}"}})')
    assert seconds == 0
    count = value(url, f'sum(ferryman_handler_duration_seconds_count{{test="{suffix}"}})')
    assert count == RECORDS
