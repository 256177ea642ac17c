"""The result of one health check."""

from __future__ import annotations

from typing import NamedTuple


class Check(NamedTuple):
    """One check of a service's health: what, whether it passed, and a line saying why."""

    name: str
    ok: bool
    detail: str
