"""``ferryman demo`` runs with nothing to start and exits 0."""

from __future__ import annotations

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
