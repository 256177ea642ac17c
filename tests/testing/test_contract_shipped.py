"""The contract suite ships in the package: a third-party backend runs it with pytest --pyargs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.testing.installed import REPO

BACKEND = '''
from pathlib import Path

from ferryman.broker.embedded.broker import EmbeddedBroker


def open_test_broker(directory: Path) -> EmbeddedBroker:
    """Stands in for a third party's backend: any Broker will do."""
    return EmbeddedBroker(directory / "third-party.db")
'''


def test_a_third_party_backend_runs_the_shipped_suite(tmp_path: Path) -> None:
    (tmp_path / "mybackend.py").write_text(BACKEND)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FERRYMAN_", "PYTEST"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(tmp_path)]),
        FERRYMAN_CONTRACT_BACKEND="mybackend:open_test_broker",
    )
    run = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"),
            *("--pyargs", "ferryman.testing.contract", "-k", "produce or offsets or processes"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    summary = run.stdout.strip().splitlines()[-1]
    assert " passed" in summary, run.stdout
    assert "failed" not in summary, run.stdout
    # the multi-process tests open the broker by URL in other processes: skipped, and said why
    assert "has no URL that another process can open" in run.stdout
