"""Shared by the operator command tests: a place (broker and registry, both backends), unique
names, the CLI runner, and services made on the spot."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from typer.testing import CliRunner, Result

from ferryman.broker import open_broker
from ferryman.broker.base import Admin, Broker
from ferryman.cli import app
from ferryman.config import ServiceConfig
from ferryman.service import Service

T = TypeVar("T")

FAST = ServiceConfig(
    commit_interval=0.05,
    backoff=0.01,
    backoff_max=0.05,
    retries=0,
    shutdown_timeout=10,
    consumer_config={"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"},
)


@dataclass
class Place:
    """A broker and registry for one test, and a unique suffix for its names."""

    kind: str
    broker: str
    registry: str
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def timeout(self) -> float:
        return 60.0 if self.kind == "kafka" else 20.0

    def name(self, prefix: str) -> str:
        return f"{prefix}-{self.suffix}"

    def where(self) -> list[str]:
        return ["--broker", self.broker, "--registry", self.registry]

    def service(self, name: str, config: ServiceConfig = FAST) -> Service:
        return Service(self.name(name), broker=self.broker, registry=self.registry, config=config)

    @contextmanager
    def admin(self) -> Iterator[Admin]:
        with self.opened() as broker:
            admin = broker.admin()
            try:
                yield admin
            finally:
                admin.close()

    @contextmanager
    def opened(self) -> Iterator[Broker]:
        broker = open_broker(self.broker)
        try:
            yield broker
        finally:
            broker.close()

    def invoke(self, *args: str, stdin: str | None = None) -> Result:
        """``ferryman ARGS --broker .. --registry ..`` (options after the arguments)."""
        return invoke(*args, *self.where(), stdin=stdin)


def invoke(*args: str, stdin: str | None = None) -> Result:
    from ferryman.cli import _register_commands

    _register_commands()
    return CliRunner().invoke(app, list(args), input=stdin)


def ok(result: Result) -> str:
    assert result.exit_code == 0, f"{result.output}\n{result.stderr if result.stderr_bytes else ''}"
    return result.stdout


def json_of(result: Result) -> Any:
    return json.loads(ok(result))


def lines_of(result: Result) -> list[Any]:
    return [json.loads(line) for line in ok(result).splitlines() if line.strip()]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)
