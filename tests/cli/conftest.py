"""Fixtures of the CLI tests: a clean environment, and a place on both backends."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .operating import Place

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
