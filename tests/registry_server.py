"""`ferryman registry serve` as a real process, for tests that talk HTTP to a registry.

One class for every such test: the schema suite's shared server, the runtime's registry outage
(stopped and started again on the same port) and the server's command-line options. The
``registry_server`` fixture in tests/conftest.py gives a started one per test.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest
from tests.waiting import wait_until

SERVE = "from ferryman.cli import main; main()"
"""The CLI as ``python -c`` runs it: this interpreter and this checkout, whatever is on PATH."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RegistryServer:
    """`ferryman registry serve` on a port of its own, serving ``path`` (None: the default file).

    ``args`` are extra command-line options; ``env`` overrides the environment (None unsets a
    variable; ``FERRYMAN_REGISTRY_AUTH`` is unset unless given). ``stop()`` keeps its stderr.
    """

    def __init__(
        self,
        path: Path | None,
        *args: str,
        env: Mapping[str, str | None] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.path = path
        self.args = args
        self.env = {"FERRYMAN_REGISTRY_AUTH": None, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr = ""

    def command(self) -> list[str]:
        where = ["--path", str(self.path)] if self.path is not None else []
        serve = [sys.executable, "-c", SERVE, "registry", "serve", "--port", str(self.port)]
        return [*serve, *where, *self.args]

    def start(self, timeout: float = 30.0) -> RegistryServer:
        """Start the process and wait until it answers HTTP (any status: a 401 is up too)."""
        environ = {k: v for k, v in os.environ.items() if k not in self.env}
        environ.update({k: v for k, v in self.env.items() if v is not None})
        self.proc = subprocess.Popen(
            self.command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environ
        )
        try:
            wait_until(
                self.answers,
                timeout,
                f"`ferryman registry serve` to answer at {self.url}",
                interval=0.05,
                ignore=(httpx.TransportError,),
            )
        except AssertionError:
            self.stop()
            raise
        return self

    def answers(self) -> bool:
        """True once the server answers; fails the test at once if the process ended."""
        if self.proc is None or self.proc.poll() is not None:
            self.stop()
            pytest.fail(f"`ferryman registry serve` exited: {self.stderr}")
        httpx.get(self.url + "/", timeout=1.0)
        return True

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Terminate the process (kill it if it lingers) and keep what it wrote to stderr."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        self.stderr = err.decode(errors="replace")
