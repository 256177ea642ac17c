"""``ferryman reconcile module:service [TOPIC] [--json]``: exit 0 in sync, 3 on drift with counts
and samples, 1 with one line for a topic the service does not mirror."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

CLI = "import sys; from ferryman.cli import main; sys.argv[0] = 'ferryman'; main()"

APP = """
from dataclasses import dataclass

import ferryman as fm


@dataclass
class Customer:
    id: int
    name: str


customers = fm.EntityTopic("reconcile.customers.{suffix}", Customer, key="id")
copy = fm.Service("copy-{suffix}")
copy.mirror(customers, table="customers")
owner = fm.Service("owner-{suffix}")
"""


def reconcile(tmp: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CLI, "reconcile", "app_reconcile:copy", *args],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_reconcile_exits_zero_in_sync_and_three_on_drift(tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    (tmp_path / "app_reconcile.py").write_text(textwrap.dedent(APP.format(suffix=suffix)))
    database = f"sqlite:///{tmp_path / 'copy.db'}"
    env = {
        **os.environ,
        "FERRYMAN_BROKER": f"embedded:{tmp_path / 'broker.db'}",
        "FERRYMAN_DATABASE": database,
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

    clean = reconcile(tmp_path, env)
    assert clean.returncode == 0, clean.stderr[-3000:]
    assert "in sync" in clean.stdout

    engine = create_engine(database)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM customers WHERE id IN (1, 2)"))
        conn.execute(text("UPDATE customers SET name = 'x' WHERE id = 4"))
        conn.execute(text("INSERT INTO customers (id, name) VALUES (99, 'ghost')"))
    engine.dispose()
    drift = reconcile(tmp_path, env, f"reconcile.customers.{suffix}", "--json")
    assert drift.returncode == 3, drift.stderr[-3000:]
    [mirror] = json.loads(drift.stdout)["mirrors"]
    assert (mirror["missing"], mirror["extra"], mirror["differing"]) == (2, 1, 1)
    assert mirror["missing_samples"] == [1, 2]
    assert mirror["extra_samples"] == [99]
    assert mirror["differing_samples"] == [4]
    assert mirror["lag_offsets"] == 0

    human = reconcile(tmp_path, env)
    assert human.returncode == 3
    assert "missing keys, e.g. 1, 2" in human.stdout

    unknown = reconcile(tmp_path, env, "nope")
    assert unknown.returncode == 1
    assert "has no mirror of 'nope'" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1


SYNC = """
import asyncio, time
import app_reconcile as app


async def main():
    async with app.owner, app.copy:
        for i in range(10):
            await app.owner.publish(app.customers, app.Customer(i, f"c{i}"))
        await app.owner.delete(app.customers, key=9)
        deadline = time.monotonic() + 30
        while app.copy.lag()[app.customers.name].offsets:
            assert time.monotonic() < deadline, app.copy.lag()
            await asyncio.sleep(0.05)


asyncio.run(main())
"""
