"""Opening a registry by URL: the one place that knows both backends."""

from __future__ import annotations

from typing import Any

from ferryman.errors import ConfigError
from ferryman.schema.embedded import EmbeddedRegistry
from ferryman.schema.http import HttpRegistry
from ferryman.schema.registry import Registry


def open_registry(url: str, *, config: dict[str, Any] | None = None) -> Registry:
    """Open the registry at ``url``: ``embedded:PATH`` or the ``http(s)://`` URL of one.

    ``config`` adds SchemaRegistryClient settings (``basic.auth.user.info``, TLS) for HTTP. Where
    a bare ``embedded`` registry lives is decided by ``ferryman.config`` (beside the embedded
    broker's file), which hands down ``embedded:PATH``.
    """
    if url.startswith("embedded:") and url[len("embedded:") :]:
        return EmbeddedRegistry(url[len("embedded:") :])
    if url.startswith(("http://", "https://")):
        return HttpRegistry(url, config)
    if url in ("embedded", "embedded:"):
        raise ConfigError(
            f"registry URL {url!r} names no file: resolve it with "
            "ferryman.config.resolve_locations() (beside the embedded broker's file), or write "
            "embedded:PATH"
        )
    raise ConfigError(
        f"unknown registry URL {url!r}: use embedded:PATH or the http(s):// URL of a "
        "Confluent-compatible schema registry"
    )
