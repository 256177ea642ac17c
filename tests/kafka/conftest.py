"""A private three-broker Kafka cluster for fault tests, started and stopped by scripts/kafka.sh.

It has its own directory and ports (29092..29094, controllers 29192..29194), so it never meets
the single broker the rest of the suite uses. Without Java or Maven the tests skip locally and
fail under ``CI=true``; a cluster that does not start is a failure everywhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "kafka.sh"
CLUSTER_PORT = 29092


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
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    if missing:
        reason = (
            f"a three-broker Kafka needs {' and '.join(missing)} on PATH (see scripts/kafka.sh)"
        )
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(reason)
    directory = tmp_path_factory.mktemp("kafka-cluster3")
    out = run_script(
        "start", "--brokers", "3", "--dir", str(directory), "--port", str(CLUSTER_PORT), "--fresh"
    )
    bootstrap = out.strip().rsplit("=", 1)[-1]
    try:
        yield Cluster(bootstrap, directory)
    finally:
        run_script("stop", "--dir", str(directory))
