"""Imports every module that adds commands to the ``ferryman`` app (one line per module)."""

from __future__ import annotations

from ferryman.cli import (
    demo,  # noqa: F401
    dlq,  # noqa: F401
    docs,  # noqa: F401
    groups,  # noqa: F401
    info,  # noqa: F401
    lag,  # noqa: F401
    lint,  # noqa: F401
    reconcile,  # noqa: F401
    registry,  # noqa: F401
    relay,  # noqa: F401
    republish,  # noqa: F401
    run,  # noqa: F401
    schema,  # noqa: F401
    tail,  # noqa: F401
    topics,  # noqa: F401
)
