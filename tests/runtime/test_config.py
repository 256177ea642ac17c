"""Configuration: arguments win over FERRYMAN_* variables, which win over the defaults."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest

from ferryman.config import ServiceConfig, resolve_locations
from ferryman.errors import ConfigError
from ferryman.runtime.connections import registry_url
from ferryman.runtime.service import Service
from ferryman.topics import EventTopic


@dataclass
class Job:
    n: int


def test_defaults_are_embedded_under_dot_ferryman() -> None:
    loc = resolve_locations(environ={})
    assert loc.broker == "embedded:.ferryman/broker.db"
    assert loc.registry == "embedded"
    assert loc.database.startswith("sqlite:///.ferryman/")
    assert registry_url(loc) == "embedded:.ferryman/registry.db"


def test_environment_beats_defaults() -> None:
    env = {
        "FERRYMAN_BROKER": "kafka://k1:9092",
        "FERRYMAN_REGISTRY": "http://registry:8081",
        "FERRYMAN_DATABASE": "postgresql://db/app",
    }
    loc = resolve_locations(environ=env)
    assert (loc.broker, loc.registry, loc.database) == (
        "kafka://k1:9092",
        "http://registry:8081",
        "postgresql://db/app",
    )


def test_arguments_beat_environment() -> None:
    env = {"FERRYMAN_BROKER": "kafka://k1:9092", "FERRYMAN_REGISTRY": "http://r:8081"}
    loc = resolve_locations("embedded:/tmp/x/broker.db", "embedded", "sqlite:///x.db", environ=env)
    assert (loc.broker, loc.registry, loc.database) == (
        "embedded:/tmp/x/broker.db",
        "embedded",
        "sqlite:///x.db",
    )
    assert registry_url(loc) == "embedded:/tmp/x/registry.db"


def test_service_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from ferryman.runtime.service import Service

    monkeypatch.setenv("FERRYMAN_BROKER", "embedded:/tmp/from-env/broker.db")
    assert Service("a").locations.broker == "embedded:/tmp/from-env/broker.db"
    assert Service("b", broker="embedded:/tmp/arg/broker.db").locations.broker == (
        "embedded:/tmp/arg/broker.db"
    )


@pytest.mark.parametrize(
    ("broker", "registry", "message"),
    [
        ("redis://x", None, "not a broker URL"),
        (None, "ftp://x", "not a registry URL"),
    ],
)
def test_bad_urls_say_what_to_write(broker: str | None, registry: str | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_locations(broker, registry, environ={})


def test_service_config_checks_itself() -> None:
    with pytest.raises(ConfigError, match="on_error='stop'"):
        ServiceConfig(on_error="explode")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="retries"):
        ServiceConfig(retries=-1)


def test_backoff_grows_exponentially_up_to_its_cap() -> None:
    cfg = ServiceConfig(backoff=0.1, backoff_multiplier=2, backoff_max=0.5)
    assert [cfg.delay(n) for n in (1, 2, 3, 4)] == [0.1, 0.2, 0.4, 0.5]


@pytest.mark.parametrize("value", ["soon", "0"])
def test_a_bad_max_poll_interval_is_refused_at_start(tmp_path: Path, value: str) -> None:
    svc = Service(
        "picky",
        broker=f"embedded:{tmp_path / 'broker.db'}",
        config=ServiceConfig(consumer_config={"max.poll.interval.ms": value}),
    )

    @svc.on(EventTopic("picky.events", Job, partitions=1))
    async def h(job: Job) -> None: ...

    async def main() -> None:
        try:
            with pytest.raises(ConfigError, match=rf"max.poll.interval.ms='{value}': write"):
                await svc.start()
        finally:
            await svc.stop()

    asyncio.run(main())
