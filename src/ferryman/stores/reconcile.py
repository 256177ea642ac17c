"""Reconcile: compare a mirror's table with its topic's latest state (read from the log by the
caller) and say which keys are missing, extra or differing, with counts and samples."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from sqlalchemy import Connection, select

from ferryman.stores.mirror import Mirror

SAMPLES = 5
"""Keys shown per kind of drift."""


class Drift(NamedTuple):
    """How a mirror's table differs from its topic: keys the table lacks (``missing``), keys
    only the table has (``extra``), keys whose row differs (``differing``), each with a count and
    up to ``SAMPLES`` sample keys; ``rows`` is the table's size, ``keys`` the topic's."""

    topic: str
    table: str
    keys: int
    rows: int
    missing: int
    extra: int
    differing: int
    missing_samples: list[Any]
    extra_samples: list[Any]
    differing_samples: list[Any]

    @property
    def drifted(self) -> bool:
        return bool(self.missing or self.extra or self.differing)

    def as_dict(self) -> dict[str, Any]:
        """The drift as JSON-ready values (keys as they are, or their text)."""
        out: dict[str, Any] = {}
        for name, value in self._asdict().items():
            if name.endswith("_samples"):
                value = [k if isinstance(k, int | str) else str(k) for k in value]
            out[name] = value
        out["drifted"] = self.drifted
        return out


def compare(conn: Connection, mirror: Mirror, latest: Mapping[Any, Any]) -> Drift:
    """Compare ``mirror``'s table (read through ``conn``) with ``latest``, the topic's last
    value per key; only the columns the mirror writes are compared."""
    expected: dict[Any, dict[str, Any]] = {}
    for key, value in latest.items():
        stored_key, row = mirror.expected(key, value)
        if row is not None:
            expected[stored_key] = row
    key_column = mirror.key_column
    actual = {
        r._mapping[key_column.name]: dict(r._mapping) for r in conn.execute(select(mirror.table))
    }
    missing = sorted((k for k in expected if k not in actual), key=repr)
    extra = sorted((k for k in actual if k not in expected), key=repr)
    differing = sorted(
        (
            k
            for k, row in expected.items()
            if k in actual and any(actual[k].get(c) != v for c, v in row.items())
        ),
        key=repr,
    )
    return Drift(
        mirror.topic.name,
        mirror.table.name,
        len(expected),
        len(actual),
        len(missing),
        len(extra),
        len(differing),
        missing[:SAMPLES],
        extra[:SAMPLES],
        differing[:SAMPLES],
    )
