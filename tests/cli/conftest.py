"""Fixtures of the CLI tests: a clean environment, and a place on both backends."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from .operating import Place

T = TypeVar("T")

LOCATION_VARS = ("FERRYMAN_BROKER", "FERRYMAN_REGISTRY", "FERRYMAN_DATABASE")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No FERRYMAN_* from the caller; and commands given --broker set them: undo that."""
    saved = dict(os.environ)
    for var in LOCATION_VARS:
        os.environ.pop(var, None)
    monkeypatch.setattr(sys, "path", list(sys.path))  # loading services adds the cwd to sys.path
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    registry = f"embedded:{tmp_path / 'registry.db'}"
    if request.param == "kafka":
        bootstrap = request.getfixturevalue("kafka_bootstrap")
        return Place("kafka", f"kafka://{bootstrap}", registry)
    return Place("embedded", f"embedded:{tmp_path / 'broker.db'}", registry)


REPO = Path(__file__).resolve().parents[2]
ASYNCAPI_SPECS = REPO / ".cache" / "asyncapi" / "node_modules" / "@asyncapi" / "specs"


def _require(found: T | None, what: str, how: str) -> T:
    """``found``; else skip (locally) or fail (under CI=true), as tests/conftest.py does for
    servers."""
    if found is not None:
        return found
    reason = f"{what} is not available: {how}"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def asyncapi_schema() -> dict[str, Any]:
    """The official AsyncAPI 3.0.0 JSON Schema, from npm's @asyncapi/specs (installed by .ci/run
    into .cache/asyncapi, or where FERRYMAN_ASYNCAPI_SPECS points)."""
    root = Path(os.environ.get("FERRYMAN_ASYNCAPI_SPECS", ASYNCAPI_SPECS))
    path = root / "schemas" / "3.0.0.json"
    found = path if path.is_file() else None
    schema_file = _require(
        found,
        "the AsyncAPI 3.0 JSON Schema",
        f"run `npm install --prefix .cache/asyncapi @asyncapi/specs` (looked for {path})",
    )
    loaded: dict[str, Any] = json.loads(schema_file.read_text())
    return loaded


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path of a headless-capable Chromium (Debian's package)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return _require(found, "Chromium", "install Debian's package: apt-get install chromium")
