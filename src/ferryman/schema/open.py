"""Opening a registry by URL: the one place that knows both backends."""

from __future__ import annotations

from typing import Any

from ferryman.errors import ConfigError
from ferryman.schema.embedded import EmbeddedRegistry
from ferryman.schema.http import HttpRegistry
from ferryman.schema.registry import Registry


def open_registry(url: str, *, config: dict[str, Any] | None = None) -> Registry:
    """Open the registry at ``url``: ``embedded:PATH`` or the ``http(s)://`` URL of one.

    ``config`` adds SchemaRegistryClient settings (``basic.auth.user.info``, TLS) for HTTP. A bare
    ``embedded`` still opens the default file (beside ``$FERRYMAN_BROKER``'s) until every caller
    resolves the path itself.
    """
    if url == "embedded" or url.startswith("embedded:"):
        return EmbeddedRegistry(url[len("embedded:") :] or None)
    if url.startswith(("http://", "https://")):
        return HttpRegistry(url, config)
    raise ConfigError(
        f"unknown registry URL {url!r}: use embedded:PATH or the http(s):// URL of a "
        "Confluent-compatible schema registry"
    )
