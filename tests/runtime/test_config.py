"""Configuration: arguments win over FERRYMAN_* variables, which win over the defaults; every
location is parsed once, in ferryman.config, and every ServiceConfig field is checked at once."""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ferryman.broker import EmbeddedLocation, KafkaLocation, open_broker, parse_broker_url
from ferryman.config import (
    Locations,
    ServiceConfig,
    broker_location,
    make_directory_for,
    resolve_locations,
)
from ferryman.errors import ConfigError
from ferryman.records import TopicPartition
from ferryman.runtime.connections import Connections
from ferryman.runtime.offsets import Offsets
from ferryman.service import Service
from ferryman.topics import EventTopic


@dataclass
class Job:
    n: int


def test_defaults_are_embedded_under_dot_ferryman(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    loc = resolve_locations(environ={})
    assert loc.broker == EmbeddedLocation(tmp_path / ".ferryman" / "broker.db")
    assert loc.registry == f"embedded:{tmp_path / '.ferryman' / 'registry.db'}"
    assert loc.database == f"sqlite:///{tmp_path / '.ferryman' / 'database.db'}"


def test_the_default_database_is_a_file_per_service_beside_the_embedded_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_locations(environ={}, service="orders").database == (
        f"sqlite:///{tmp_path / '.ferryman' / 'orders.db'}"
    )
    beside = resolve_locations(
        f"embedded:{tmp_path / 'b' / 'broker.db'}", service="a/b", environ={}
    )
    assert beside.database == f"sqlite:///{tmp_path / 'b' / 'a_b.db'}"
    on_kafka = resolve_locations("kafka://k:9092", "http://r:8081", service="orders", environ={})
    assert on_kafka.database == f"sqlite:///{tmp_path / '.ferryman' / 'orders.db'}"


def test_environment_beats_defaults() -> None:
    env = {
        "FERRYMAN_BROKER": "kafka://k1:9092",
        "FERRYMAN_REGISTRY": "http://registry:8081",
        "FERRYMAN_DATABASE": "postgresql://db/app",
    }
    loc = resolve_locations(environ=env)
    assert (loc.broker, loc.registry, loc.database) == (
        KafkaLocation("k1:9092"),
        "http://registry:8081",
        "postgresql://db/app",
    )


def test_arguments_beat_environment() -> None:
    env = {"FERRYMAN_BROKER": "kafka://k1:9092", "FERRYMAN_REGISTRY": "http://r:8081"}
    loc = resolve_locations("embedded:/tmp/x/broker.db", "embedded", "sqlite:////x.db", environ=env)
    assert (loc.broker, loc.registry, loc.database) == (
        EmbeddedLocation(Path("/tmp/x/broker.db")),
        "embedded:/tmp/x/registry.db",  # beside the broker's file
        "sqlite:////x.db",
    )


def test_service_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRYMAN_BROKER", "embedded:/tmp/from-env/broker.db")
    assert Service("a").locations.broker == EmbeddedLocation(Path("/tmp/from-env/broker.db"))
    assert Service("b", broker="embedded:/tmp/arg/broker.db").locations.broker == (
        EmbeddedLocation(Path("/tmp/arg/broker.db"))
    )


def test_whitespace_around_a_location_is_stripped_everywhere() -> None:
    # Issue 9 item 13: Service stripped "embedded:PATH  ", open_broker() did not (another file).
    env = {"FERRYMAN_BROKER": "  embedded:/tmp/ws/broker.db \n", "FERRYMAN_REGISTRY": " embedded "}
    loc = resolve_locations(environ=env)
    assert loc.broker == EmbeddedLocation(Path("/tmp/ws/broker.db"))
    assert loc.registry == "embedded:/tmp/ws/registry.db"
    assert broker_location(environ=env) == loc.broker
    assert parse_broker_url("embedded:/tmp/ws/broker.db  ") == loc.broker


def test_tilde_and_relative_paths_are_resolved_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    loc = resolve_locations("embedded:~/state/broker.db", database="sqlite:///~/app.db", environ={})
    assert loc.broker == EmbeddedLocation(tmp_path / "home" / "state" / "broker.db")
    assert loc.registry == f"embedded:{tmp_path / 'home' / 'state' / 'registry.db'}"
    assert loc.database == f"sqlite:///{tmp_path / 'home' / 'app.db'}"
    rel = resolve_locations("embedded:b/broker.db", "embedded:r/registry.db", environ={})
    assert rel.broker == EmbeddedLocation(tmp_path / "b" / "broker.db")
    assert rel.registry == f"embedded:{tmp_path / 'r' / 'registry.db'}"


@pytest.mark.parametrize("registry", [None, "embedded", " embedded "])
def test_a_kafka_broker_needs_a_named_registry(registry: str | None) -> None:
    # Issue 9 item 5: a registry silently private to ./.ferryman/ splits schema ids.
    with pytest.raises(ConfigError, match="schema ids") as err:
        resolve_locations("kafka://k1:9092", registry, environ={})
    assert "FERRYMAN_REGISTRY" in str(err.value)
    assert "embedded:PATH" in str(err.value)


def test_a_kafka_broker_takes_an_explicit_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"FERRYMAN_BROKER": "kafka://k1:9092"}
    assert resolve_locations(registry="embedded:shared.db", environ=env).registry == (
        f"embedded:{tmp_path / 'shared.db'}"
    )
    assert resolve_locations(registry="https://r:8081/", environ=env).registry == "https://r:8081"


def test_a_registry_opened_in_code_is_a_named_registry(tmp_path: Path) -> None:
    from ferryman.schema import EmbeddedRegistry

    with EmbeddedRegistry(tmp_path / "r.db") as registry:
        svc = Service("s", broker="kafka://k1:9092", registry=registry)
        assert svc.locations.registry == "the EmbeddedRegistry given in code"


def test_kafka_properties_come_from_the_environment_in_one_place() -> None:
    env = {
        "FERRYMAN_BROKER": "kafka://k1:9092, k2:9092/",
        "FERRYMAN_KAFKA_SASL_PASSWORD": "hunter2",
        "FERRYMAN_REGISTRY": "http://r:8081",
    }
    loc = resolve_locations(environ=env)
    assert isinstance(loc.broker, KafkaLocation)
    assert loc.broker.bootstrap == "k1:9092,k2:9092"
    assert dict(loc.broker.config) == {"sasl.password": "hunter2"}
    assert "hunter2" not in repr(loc)
    assert "hunter2" not in str(loc.broker)


@pytest.mark.parametrize(
    ("broker", "registry", "database", "message"),
    [
        ("redis://x", None, None, "not a broker URL"),
        ("embedded:", None, None, "names no file"),
        ("kafka://", None, None, "does not name its servers"),
        ("kafka://a:1,,b:2", "http://r", None, "does not name its servers"),
        (None, "ftp://x", None, "not a registry URL"),
        (None, "embedded:  ", None, "names no file"),
        (None, None, "data.db", "not an SQLAlchemy URL"),
    ],
)
def test_bad_urls_say_what_to_write(
    broker: str | None, registry: str | None, database: str | None, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_locations(broker, registry, database, environ={})


def test_open_broker_takes_a_parsed_location(tmp_path: Path) -> None:
    where = EmbeddedLocation(tmp_path / "b.db")
    broker = open_broker(where)
    try:
        broker.admin().list_topics()
    finally:
        broker.close()
    assert (tmp_path / "b.db").exists()


def test_a_directory_that_cannot_be_created_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=re.escape("/proc/x/r.db")):
        make_directory_for(Path("/proc/x/r.db"), "schema registry file")


@dataclass
class Tick:
    n: int


def test_a_service_names_the_registry_file_it_cannot_create(tmp_path: Path) -> None:
    svc = Service("x", broker=f"embedded:{tmp_path / 'b.db'}", registry="embedded:/proc/x/r.db")
    try:
        with pytest.raises(ConfigError, match=re.escape("/proc/x/r.db")):
            svc.emit(EventTopic("ticks", Tick), Tick(1)).result()
    finally:
        asyncio.run(svc.stop())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("commit_interval", math.nan),
        ("commit_interval", 0),
        ("commit_interval", math.inf),
        ("shutdown_timeout", -1),
        ("shutdown_timeout", math.nan),
        ("backoff", -0.1),
        ("backoff_max", math.inf),
        ("backoff_multiplier", 0.5),
        ("backoff_multiplier", math.nan),
        ("auto_offset_reset", "bogus"),
        ("on_error", "explode"),
        ("retries", -1),
        ("retries", 1.5),
        ("registry_retries", -1),
        ("registry_retries", "forever"),
        ("registry_retries", False),
        ("poll_records", 0),
        ("poll_records", True),
        ("max_in_flight", "10"),
        ("max_in_flight", 0),
        ("max_buffered", 0),
        ("group", ""),
        ("create_topics", "yes"),
        ("consumer_config", {"session.timeout.ms": 6000}),
        ("producer_config", [("linger.ms", "5")]),
    ],
)
def test_service_config_checks_every_field_at_construction(field: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=f"{field}=.*write"):
        ServiceConfig(**{field: value})


def test_service_config_accepts_sensible_values() -> None:
    cfg = ServiceConfig(
        group="g",
        commit_interval=1,
        shutdown_timeout=0,
        backoff_multiplier=1,
        auto_offset_reset="latest",
        consumer_config={"session.timeout.ms": "6000"},
        registry_retries=0,
    )
    assert cfg.commit_interval == 1
    assert ServiceConfig().registry_retries is None, "waits for the registry forever by default"
    assert ServiceConfig(poll_records=500).buffered == 1500, "three polls by default"
    assert ServiceConfig(poll_records=500, max_buffered=500).buffered == 500


def test_poll_records_defaults_to_the_brokers_and_fits_max_buffered() -> None:
    kafka, embedded = (ServiceConfig().for_broker(embedded=e) for e in (False, True))
    assert (kafka.poll_records, kafka.buffered) == (2000, 6000)
    assert (embedded.poll_records, embedded.buffered) == (4000, 12_000)
    assert ServiceConfig(poll_records=500).for_broker(embedded=True).poll_records == 500
    # Under a buffer of its own, a third of it: between Kafka's 2,000 and the broker's default,
    # and never more than the buffer (the poll thread would wait for it to empty).
    polls = {
        (room, e): ServiceConfig(max_buffered=room).for_broker(embedded=e).polled
        for room in (1, 1500, 4000, 9000, 20_000)
        for e in (False, True)
    }
    assert polls == {
        (1, False): 1,
        (1, True): 1,
        (1500, False): 1500,
        (1500, True): 1500,
        (4000, False): 2000,
        (4000, True): 2000,
        (9000, False): 2000,
        (9000, True): 3000,
        (20_000, False): 2000,
        (20_000, True): 4000,
    }
    with pytest.raises(ConfigError, match=r"max_buffered=1999: write a whole number >= poll_rec"):
        ServiceConfig(poll_records=2000, max_buffered=1999)  # a full poll would never fit
    with pytest.raises(ConfigError, match=r"max_buffered=0: write a whole number >= 1, or None"):
        ServiceConfig(max_buffered=0)


def test_max_in_flight_is_past_max_buffered_unless_set() -> None:
    # A fixed per-partition bound below a raised max_buffered paused a busy partition under
    # normal load; on Kafka each pause drops its prefetch (half the throughput, bench/peers.py).
    assert ServiceConfig().for_broker(embedded=False).in_flight == 6001
    assert ServiceConfig(max_buffered=20_000).in_flight == 20_001
    assert ServiceConfig(max_buffered=20_000, max_in_flight=100).in_flight == 100
    for config in (ServiceConfig().for_broker(embedded=False), ServiceConfig(max_buffered=20_000)):
        offsets = Offsets(config.in_flight, config.buffered)
        tp = TopicPartition("t", 0)
        polls = 0
        while offsets.room_for(config.polled):  # one partition takes every poll
            assert not offsets.fetched(tp, config.polled), "paused while the buffer had room"
            polls += 1
        assert polls * config.polled == config.buffered, "it filled the whole buffer"
        assert offsets.paused() == set()


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


def test_the_broker_a_service_was_given_decides_its_default_poll(tmp_path: Path) -> None:
    # A service given an opened broker takes its locations from the environment, which may name
    # another broker: the object's type decides (the embedded broker polls 4,000, Kafka 2,000).
    kafka = Locations(KafkaLocation("127.0.0.1:1"), "embedded", "sqlite://")
    embedded = Locations(EmbeddedLocation(tmp_path / "b.db"), "embedded", "sqlite://")
    broker = open_broker(EmbeddedLocation(tmp_path / "given.db"))
    try:
        assert Connections(kafka, broker, None).embedded()
        assert Connections(embedded, None, None).embedded()
        assert not Connections(kafka, None, None).embedded()
    finally:
        broker.close()
