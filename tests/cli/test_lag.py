"""``ferryman lag module:service [--json] [--max-records N] [--max-seconds S]``: each mirror's
records and seconds behind; exit 3 past a limit, 2 for a service without mirrors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

CLI = "import sys; from ferryman.cli import main; sys.argv[0] = 'ferryman'; main()"

APP = """
from dataclasses import dataclass

import ferryman as fm


@dataclass
class Customer:
    id: int
    name: str


customers = fm.EntityTopic("lag.customers.{suffix}", Customer, key="id")
copy = fm.Service("copy-{suffix}")
copy.mirror(customers, table="customers")
owner = fm.Service("owner-{suffix}")
plain = fm.Service("plain-{suffix}")
"""

# The copy applies the first 10 records and stops; then 5 more are published while it is down.
SYNC = """
import asyncio, time
import app_lag as app


async def main():
    async with app.owner, app.copy:
        for i in range(10):
            await app.owner.publish(app.customers, app.Customer(i, f"c{i}"))
        deadline = time.monotonic() + 30
        while app.copy.lag()[app.customers.name].offsets:
            assert time.monotonic() < deadline, app.copy.lag()
            await asyncio.sleep(0.05)
    async with app.owner:
        for i in range(5):
            await app.owner.publish(app.customers, app.Customer(i, f"v2-{i}"))


asyncio.run(main())
"""


def ferryman(tmp: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CLI, "lag", *args],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_lag_shows_records_and_seconds_behind_and_exits_three_past_a_limit(
    tmp_path: Path,
) -> None:
    suffix = uuid.uuid4().hex[:8]
    (tmp_path / "app_lag.py").write_text(textwrap.dedent(APP.format(suffix=suffix)))
    env = {
        **os.environ,
        "FERRYMAN_BROKER": f"embedded:{tmp_path / 'broker.db'}",
        "FERRYMAN_DATABASE": f"sqlite:///{tmp_path / 'copy.db'}",
    }
    env.pop("FERRYMAN_REGISTRY", None)
    sync = subprocess.run(
        [sys.executable, "-c", SYNC],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert sync.returncode == 0, sync.stderr[-3000:]
    topic = f"lag.customers.{suffix}"

    report = ferryman(tmp_path, env, "app_lag:copy", "--json")
    assert report.returncode == 0, report.stderr[-3000:]
    [mirror] = json.loads(report.stdout)["mirrors"]
    assert (mirror["topic"], mirror["lag_records"], mirror["behind"]) == (topic, 5, False)
    assert 0 < mirror["lag_seconds"] < 120  # since the last applied record, published just now

    human = ferryman(tmp_path, env, "app_lag:copy")
    assert human.returncode == 0, human.stderr[-3000:]
    assert topic in human.stdout
    assert " 5 " in human.stdout

    assert ferryman(tmp_path, env, "app_lag:copy", "--max-records", "5").returncode == 0
    over = ferryman(tmp_path, env, "app_lag:copy", "--max-records", "4", "--json")
    assert over.returncode == 3
    assert json.loads(over.stdout)["mirrors"][0]["behind"] is True
    assert ferryman(tmp_path, env, "app_lag:copy", "--max-seconds", "0").returncode == 3
    assert ferryman(tmp_path, env, "app_lag:copy", "--max-seconds", "3600").returncode == 0

    none = ferryman(tmp_path, env, "app_lag:plain")
    assert none.returncode == 2
    assert "mirrors no topic" in none.stderr
    assert len(none.stderr.strip().splitlines()) == 1
    negative = ferryman(tmp_path, env, "app_lag:copy", "--max-records", "-1")
    assert negative.returncode == 2
    assert "negative" in negative.stderr
