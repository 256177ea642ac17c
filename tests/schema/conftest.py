"""Fixtures for the schema tests: registries, and `ferryman registry serve` as a real process."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.registry_server import RegistryServer

from ferryman.schema import EmbeddedRegistry, HttpRegistry, Registry


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A running `ferryman registry serve`: its URL and the registry file it serves."""
    path = tmp_path_factory.mktemp("registry") / "registry.db"
    served = RegistryServer(path).start()
    try:
        yield served.url, path
    finally:
        served.stop()


@pytest.fixture
def server_url(server: tuple[str, Path]) -> str:
    return server[0]


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[EmbeddedRegistry]:
    registry = EmbeddedRegistry(tmp_path / "registry.db")
    try:
        yield registry
    finally:
        registry.close()


@pytest.fixture
def topic() -> str:
    """A topic name no other test uses (servers are shared within a module)."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def far_from_utc() -> Iterator[None]:
    """Local time five hours behind UTC, so local-time conversions show."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TZ", "America/New_York")
        time.tzset()
        yield
    time.tzset()


@pytest.fixture(params=["embedded", "http"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Registry]:
    reg: Registry
    if request.param == "embedded":
        reg = EmbeddedRegistry(tmp_path / "registry.db")
    else:
        reg = HttpRegistry(request.getfixturevalue("server_url"))
    try:
        yield reg
    finally:
        reg.close()
