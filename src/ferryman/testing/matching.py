"""Matching sent records against what a test expects, and saying how the closest one differs."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from ferryman.runtime.message import Message

ANY: Any = object()
"""Matches anything (the default of ``key=``)."""

Expected = Any
"""A value (compared field by field), a dict of some fields, a predicate, or None (tombstone)."""

_LIMIT = 12
"""Differing fields shown for the closest record; the rest are counted."""


def fields_of(value: Any) -> dict[str, Any] | None:
    """A dataclass's, a pydantic model's or a dict's fields; None for anything else."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        return {name: getattr(value, name) for name in dump()}
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    return None


def differences(expected: Any, actual: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """(field path, expected, actual) for each field that differs; a dict expects only its
    own fields (the others may be anything)."""
    if expected is actual:
        return []
    want, got = fields_of(expected), fields_of(actual)
    if want is None or got is None:
        return [] if expected == actual else [(path or "value", expected, actual)]
    out: list[tuple[str, Any, Any]] = []
    for name, value in want.items():
        where = f"{path}.{name}" if path else name
        if name not in got:
            out.append((where, value, "<no such field>"))
        else:
            out.extend(differences(value, got[name], where))
    return out


def matches(expected: Expected, key: Any, message: Message[Any]) -> bool:
    if key is not ANY and message.key != key:
        return False
    if callable(expected) and not isinstance(expected, type) and fields_of(expected) is None:
        return bool(expected(message.value))
    if expected is None:
        return message.value is None
    if message.value is None:
        return False
    return not differences(expected, message.value)


def describe(expected: Expected, key: Any) -> str:
    what = "a tombstone" if expected is None else _name_of(expected)
    return what if key is ANY else f"{what} with key {key!r}"


def _name_of(expected: Any) -> str:
    if callable(expected) and fields_of(expected) is None and not isinstance(expected, type):
        return f"a value for which {_fn_name(expected)} is true"
    return repr(expected)


def mismatch_report(
    topic: str, expected: Expected, key: Any, sent: Sequence[Message[Any]], others: list[str]
) -> str:
    """Why nothing matched: what was expected, and the closest record with its differences."""
    head = f"no record sent to {topic!r} matches {describe(expected, key)}"
    if not sent:
        elsewhere = f"; records were sent to: {', '.join(others)}" if others else ""
        return f"{head}: nothing was sent to {topic!r}{elsewhere}"
    scored = [(_distance(expected, key, m), -i, m) for i, m in enumerate(sent)]
    _, _, closest = min(scored, key=lambda s: (s[0], s[1]))
    lines = [
        head,
        f"{len(sent)} record(s) were sent to {topic!r}; the closest, at partition "
        f"{closest.partition} offset {closest.offset} (key {closest.key!r}):",
    ]
    lines.append(f"    {closest.value!r}")
    diffs = _diff_lines(expected, key, closest)
    if diffs:
        lines.append("differs in:")
        lines.extend(diffs[:_LIMIT])
        if len(diffs) > _LIMIT:
            lines.append(f"    ... and {len(diffs) - _LIMIT} more")
    return "\n".join(lines)


def _fn_name(fn: Any) -> str:
    return str(getattr(fn, "__name__", None) or repr(fn))


def _diff_lines(expected: Expected, key: Any, m: Message[Any]) -> list[str]:
    out: list[str] = []
    if key is not ANY and m.key != key:
        out.append(f"    key: expected {key!r}, sent {m.key!r}")
    if callable(expected) and fields_of(expected) is None and not isinstance(expected, type):
        out.append(f"    value: {_fn_name(expected)} returned false for it")
    elif expected is None or m.value is None:
        if expected is not m.value:
            out.append(f"    value: expected {expected!r}, sent {m.value!r}")
    else:
        if (
            fields_of(expected) is not None
            and type(expected) is not type(m.value)
            and not isinstance(expected, Mapping)
        ):
            out.append(
                f"    type: expected {type(expected).__name__}, sent {type(m.value).__name__}"
            )
        for where, want, got in differences(expected, m.value):
            out.append(f"    {where}: expected {want!r}, sent {got!r}")
    return out


def _distance(expected: Expected, key: Any, m: Message[Any]) -> int:
    return len(_diff_lines(expected, key, m))
