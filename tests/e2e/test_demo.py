"""``ferryman demo`` runs with nothing to start and exits 0."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

CLI = "import sys; from ferryman.cli import main; sys.argv[0] = 'ferryman'; main()"


def test_demo_exits_zero_and_shows_each_pattern(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CLI, "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "published customer 1" in out
    assert "deleted (tombstone)" in out
    assert "accepted by pricing" in out
    assert "ZeroDivisionError" not in out
    assert "KeyError" in out
    assert "order event(s)" in out
    # The orders service's copy of the customers is a mirror table, printed at the end: the
    # customers published, less the one deleted by tombstone.
    copy = out[out.rindex("customers_copy") :]  # the table's title, last
    assert "Ada" in copy
    assert "Grace" in copy
    assert "Linus" not in copy
    # The catalog joins products with category assignments keyed differently; the storefront
    # consumes the enriched products, printed last, and the burst of price changes reached it
    # as at most a few records.
    shelf = out[out.rindex("enriched products") :]
    assert "Kettle" in shelf
    assert "24.50" in shelf
    assert "kitchen" in shelf
    assert "published category assignments" in out
    assert "price changes reached it as" in out
    assert not (tmp_path / ".ferryman").exists(), "the demo must not write to the working directory"


def test_demo_shows_topics_and_where_records_went_and_keeps_its_broker(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # the kept directory lands here
    env.pop("FERRYMAN_BROKER", None)
    proc = subprocess.run(
        [sys.executable, "-c", CLI, "demo", "--keep"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert re.search(r"published customer 1 'Ada' -> demo\.customers partition \d offset 0", out)
    assert re.search(r"emitted -> demo\.orders\.placed partition \d offset \d", out)
    topics = out[out.rindex("topics the services created") :]
    for name in ("demo.customers ", "demo.orders.placed ", "demo.pricing.quote.reply "):
        assert name in topics
    assert "compact" in topics
    kept = re.search(r"export FERRYMAN_BROKER=(embedded:\S+)", out)
    assert kept, out[-2000:]
    broker = kept.group(1)
    assert Path(broker.removeprefix("embedded:")).exists()
    assert "What to try next" in out
    # the commands it suggests work on what it kept
    for command in re.findall(r"^  (ferryman [^#\n]+?)\s+#", out, flags=re.M):
        args = command.split()[1:]
        run = subprocess.run(
            [sys.executable, "-c", CLI, *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env={**env, "FERRYMAN_BROKER": broker},
        )
        assert run.returncode == 0, f"{command}: {run.stdout[-1500:]}{run.stderr[-1500:]}"
    tail = subprocess.run(
        [sys.executable, "-c", CLI, "tail", "demo.customers", "--from", "earliest"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "FERRYMAN_BROKER": broker},
    )
    assert "Grace" in tail.stdout


def test_demo_without_keep_says_how_to_keep(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CLI, "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ferryman demo --keep" in proc.stdout
    assert not any(p.name.startswith("ferryman-demo-") for p in tmp_path.iterdir())
