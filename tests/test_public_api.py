"""The public API names every error and type the documentation tells users about."""

from __future__ import annotations

import re
from pathlib import Path

import ferryman
from ferryman import errors

ROOT = Path(__file__).resolve().parents[1]


def documented_words() -> set[str]:
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return {w for path in texts for w in re.findall(r"\b[A-Z][A-Za-z]+\b", path.read_text())}


def test_every_documented_error_is_exported() -> None:
    tree = {name for name, v in vars(errors).items() if isinstance(v, type)}
    missing = sorted((documented_words() & tree) - set(ferryman.__all__))
    assert missing == [], f"documented but not exported from ferryman/__init__.py: {missing}"


def test_the_handles_sends_return_are_public() -> None:
    assert {"Delivery", "PendingReply", "RecordRejected", "run_services"} <= set(ferryman.__all__)
