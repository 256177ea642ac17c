"""Fixtures for the schema tests: registries, and `ferryman registry serve` as a real process."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ferryman.schema import EmbeddedRegistry, HttpRegistry, Registry

SERVE = "from ferryman.cli import main; main()"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until_up(proc: subprocess.Popen[bytes], url: str, deadline_s: float = 30.0) -> None:
    """Poll ``url`` until it answers, failing fast if the server process died."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"`ferryman registry serve` exited: {err.decode(errors='replace')}")
        try:
            if httpx.get(url + "/", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)  # polling interval while the server starts, not a wait on a result
    proc.kill()
    pytest.fail(f"`ferryman registry serve` did not answer at {url} within {deadline_s}s")


def start_server(
    path: Path | None, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """`ferryman registry serve` on a free port, serving ``path`` (None: the default file)."""
    port = free_port()
    where = ["--path", str(path)] if path is not None else []
    command = [sys.executable, "-c", SERVE, "registry", "serve", "--port", str(port), *where]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(proc, url)
    return proc, url


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A running `ferryman registry serve`: its URL and the registry file it serves."""
    path = tmp_path_factory.mktemp("registry") / "registry.db"
    proc, url = start_server(path)
    try:
        yield url, path
    finally:
        stop_server(proc)


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
