"""A private three-broker Kafka cluster for fault tests, started and stopped by scripts/kafka.sh.

It has its own directory and free ports (brokers P..P+2, controllers P+100..P+102), so it meets
neither the single broker the rest of the suite uses nor another run's cluster. It is heavy (three
JVMs), so locally it runs only when Kafka tests are wanted (``FERRYMAN_TEST_KAFKA`` is set);
under ``CI=true`` it always runs, and missing Java or Maven is a failure. A cluster that does not
start is a failure everywhere.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "kafka.sh"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def free_port_base() -> int:
    """A base port P with P..P+2 and P+100..P+102 free on 127.0.0.1."""
    rng = random.Random()
    for _ in range(50):
        base = rng.randrange(20000, 29000)
        ports = [base + i for i in (0, 1, 2, 100, 101, 102)]
        if all(port_free(p) for p in ports):
            return base
    raise RuntimeError("no free range of ports for a three-broker Kafka on 127.0.0.1")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass(frozen=True)
class Cluster:
    """A running cluster: where it answers and where its nodes keep their state."""

    bootstrap: str
    directory: Path

    def pid(self, node: int) -> int:
        return int((self.directory / f"node-{node}" / "pid").read_text())

    def start(self) -> None:
        """Start every node that is not running (on its old data) and wait until all answer."""
        run_script("start", "--dir", str(self.directory))


def run_script(*args: str) -> str:
    done = subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"scripts/kafka.sh {' '.join(args)} failed:\n{done.stderr[-4000:]}")
    return done.stdout


@pytest.fixture(scope="module")
def kafka_cluster3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if not in_ci() and not os.environ.get("FERRYMAN_TEST_KAFKA"):
        pytest.skip(
            "Kafka tests are off: set FERRYMAN_TEST_KAFKA (scripts/kafka.sh start) to run them; "
            "this one starts its own three-broker cluster"
        )
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    if missing:
        reason = (
            f"a three-broker Kafka needs {' and '.join(missing)} on PATH (see scripts/kafka.sh)"
        )
        if in_ci():
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(reason)
    directory = tmp_path_factory.mktemp("kafka-cluster3")
    out = run_script(
        "start", "--brokers", "3", "--dir", str(directory), "--port", str(free_port_base())
    )
    bootstrap = out.strip().rsplit("=", 1)[-1]
    try:
        yield Cluster(bootstrap, directory)
    finally:
        run_script("stop", "--dir", str(directory))
