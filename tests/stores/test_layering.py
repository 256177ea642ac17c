"""stores sits below the service and beside the runtime: it may use records, errors, topics and
schema (and, for the outbox, the broker's Producer protocol and partitioner), never the
runtime, rpc, broker backends, cli or service (the consumer loop calls into it)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ferryman.stores

STORES = Path(ferryman.stores.__file__).parent
ALLOWED = (
    "ferryman.stores",
    "ferryman.records",
    "ferryman.errors",
    "ferryman.topics",
    "ferryman.schema",
    "ferryman.clock",  # the republisher's cadence follows a test's FakeClock (ferryman.testing)
    # The outbox partitions by key as producers do; the relay sends through the Producer seam.
    "ferryman.broker.base",
    "ferryman.broker.partitioner",
)


def ferryman_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {name for name in found if name == "ferryman" or name.startswith("ferryman.")}


@pytest.mark.parametrize("path", sorted(STORES.glob("*.py")), ids=lambda p: p.name)
def test_stores_import_only_the_floors_below(path: Path) -> None:
    bad = {name for name in ferryman_imports(path) if not name.startswith(ALLOWED)}
    assert not bad, f"{path.name} imports {sorted(bad)}; stores may import only {ALLOWED}"


@pytest.mark.parametrize("path", sorted(STORES.glob("*.py")), ids=lambda p: p.name)
def test_stores_modules_stay_short(path: Path) -> None:
    assert len(path.read_text().splitlines()) < 500, f"{path.name}: split it"
