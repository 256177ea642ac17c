"""Imports every module that adds commands to the ``ferryman`` app (one line per module)."""

from __future__ import annotations

from ferryman.cli import info  # noqa: F401
