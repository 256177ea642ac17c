"""Client config values (Kafka names, string values) read as checked whole numbers."""

from __future__ import annotations

from collections.abc import Mapping

from ferryman.errors import ConfigError


def whole_number(
    config: Mapping[str, str], client: str, name: str, default: int, minimum: int
) -> int:
    """``config[name]`` as an int of at least ``minimum``, or ``default`` when absent."""
    raw = config.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        value = None
    if value is None or value < minimum:
        raise ConfigError(f"{client} config {name}={raw!r}: use a whole number >= {minimum}")
    return value
