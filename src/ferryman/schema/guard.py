"""What the registry server refuses before any route runs, and its error replies.

Foreign Host headers (DNS rebinding), non-JSON writes (cross-site forms), bodies over a limit,
schemas nested too deep, and, when a password is set, requests without HTTP basic auth; every
refusal in Confluent's JSON error format.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ferryman.errors import (
    ConfigError,
)

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
JSON_CONTENT_TYPES = frozenset(
    {CONTENT_TYPE, "application/vnd.schemaregistry+json", "application/json"}
)
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
DEFAULT_MAX_BODY = 1024 * 1024
MAX_SCHEMA_DEPTH = 256
"""How deeply a schema's JSON may nest (a record in a record adds 4 levels): deeper schemas are
refused with a 422 before the recursive Avro parser and compatibility rules could overflow."""
MAX_SCHEMA_ID = 2**31 - 1  # ids are Java ints in Confluent's API

SUBJECT_NOT_FOUND = 40401
VERSION_NOT_FOUND = 40402
SCHEMA_NOT_FOUND = 40403
SUBJECT_CONFIG_NOT_FOUND = 40408
SUBJECT_MODE_NOT_FOUND = 40409
INCOMPATIBLE = 409
INVALID_SCHEMA = 42201
INVALID_VERSION = 42202
INVALID_COMPATIBILITY = 42203
INVALID_MODE = 42204
NOT_PERMITTED = 42205
SERVER_ERROR = 50001

MODES = ("READWRITE", "READONLY", "READONLY_OVERRIDE", "IMPORT")


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Who may talk to the server: Host names, body size and optional basic-auth credentials."""

    allow_hosts: tuple[str, ...] = ()
    """Host names accepted besides the loopback ones; ``*`` accepts any (no rebinding guard)."""
    max_body: int = DEFAULT_MAX_BODY
    auth: tuple[str, str] | None = None
    """``(user, password)`` that every request must send by HTTP basic auth; None: no auth."""

    def __post_init__(self) -> None:
        if self.max_body < 1:
            raise ConfigError(
                f"the body limit must be a positive number of bytes, not {self.max_body}"
            )


class ApiError(Exception):
    """An error answered with Confluent's ``{"error_code", "message"}`` body."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return self.code if self.code < 1000 else self.code // 100


def reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status_code=status, media_type=CONTENT_TYPE, headers=headers)


def error(code: int, message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    """Confluent's error body: ``{"error_code": ..., "message": ...}``."""
    return reply({"error_code": code, "message": message}, status, headers)


class Guard:
    """ASGI middleware refusing, before any route runs, what a browser or stranger could send.

    A Host outside the allow-list (DNS rebinding), a missing or wrong basic-auth password, and a
    write whose content type is not JSON (a cross-site form or ``text/plain`` POST) are refused.
    """

    def __init__(self, app: ASGIApp, settings: ServerSettings) -> None:
        self.app = app
        self.any_host = "*" in settings.allow_hosts
        self.hosts = frozenset(normal_host(h) for h in (*LOOPBACK_HOSTS, *settings.allow_hosts))
        self.credentials = ":".join(settings.auth).encode() if settings.auth else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self.refusal(scope) if scope["type"] == "http" else None
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> Response | None:
        """The error response for a request the guard refuses, or None to let it through."""
        headers = Headers(scope=scope)
        host = headers.get("host")
        if not self.any_host and (host is None or normal_host(host) not in self.hosts):
            allowed = ", ".join(sorted(self.hosts))
            message = (
                f"Host {host!r} is not allowed: this registry answers to {allowed}; start it "
                "with --allow-host NAME to accept another name"
            )
            return error(400, message, 400)
        if self.credentials is not None and not self.authorized(headers.get("authorization")):
            message = (
                "authentication required: send HTTP basic auth (basic.auth.user.info for "
                "confluent-kafka's SchemaRegistryClient) with the user and password the "
                "registry was started with"
            )
            challenge = {"WWW-Authenticate": 'Basic realm="ferryman registry"'}
            return error(401, message, 401, challenge)
        if scope["method"] in ("POST", "PUT"):
            given = headers.get("content-type", "")
            if media_type(given) not in JSON_CONTENT_TYPES:
                message = (
                    f"unsupported content type {given or '(none)'!r}: send the body as "
                    f"{', '.join(sorted(JSON_CONTENT_TYPES))}"
                )
                return error(415, message, 415)
        return None

    def authorized(self, header: str | None) -> bool:
        scheme, _, token = (header or "").partition(" ")
        if self.credentials is None or scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(given, self.credentials)


async def read_body(request: Request, limit: int) -> Any:
    """The JSON body of a write (None for reads), refused with a 413 as soon as it passes ``limit``."""
    if request.method not in ("POST", "PUT"):
        return None
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, too_large(limit))
    chunks: list[bytes] = []
    size = 0
    # Counted while streaming, so a body without a Content-Length is cut off at the limit too.
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, too_large(limit))
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except RecursionError as exc:
        raise ApiError(400, too_deep("the body")) from exc
    except ValueError as exc:  # not JSON, or not UTF-8 at all
        message = 'the body is not JSON; send a JSON object such as {"schema": "..."}'
        raise ApiError(400, message) from exc


def too_large(limit: int) -> str:
    return (
        f"the body is larger than the registry's limit of {limit} bytes; send a smaller schema "
        "or start the registry with a larger --max-body"
    )


def too_deep(what: str) -> str:
    return f"{what} nests more than {MAX_SCHEMA_DEPTH} levels deep; flatten it"


def depth(value: Any) -> int:
    """How deeply ``value`` (parsed JSON) nests, found without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        children: Iterable[Any]
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


def page(items: list[Any], offset: str | None, limit: str | None) -> list[Any]:
    """``items[offset:offset + limit]`` as Confluent pages lists (a negative limit: all)."""
    try:
        start = max(int(offset or 0), 0)
        count = int(limit or -1)
    except ValueError as exc:
        raise ApiError(400, "offset and limit must be whole numbers") from exc
    return items[start:] if count < 0 else items[start : start + count]


def media_type(content_type: str) -> str:
    """``application/json`` from ``Application/JSON; charset=utf-8``."""
    return content_type.split(";", 1)[0].strip().lower()


def normal_host(host: str) -> str:
    """A Host header or name without its port, brackets, case or trailing dot."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:  # name:port; more colons is a bare IPv6 address
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine."""
    name = normal_host(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, settings: ServerSettings) -> str | None:
    """A warning when binding ``host`` exposes the registry beyond this machine without auth."""
    if settings.auth is not None or is_loopback(host):
        return None
    return (
        f"warning: the registry listens on {host}, beyond this machine, without authentication: "
        "anyone who reaches it can register and delete schemas. Set --auth USER:PASSWORD (or "
        "$FERRYMAN_REGISTRY_AUTH), or listen on 127.0.0.1"
    )


def parse_auth(text: str) -> tuple[str, str]:
    """``user:password`` as a pair; ConfigError when either part is missing."""
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise ConfigError(
            "the registry's credentials must be USER:PASSWORD with neither part empty "
            "(--auth or $FERRYMAN_REGISTRY_AUTH)"
        )
    return user, password


_SIZE = re.compile(r"(\d+)\s*(b|kib|mib)?", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "kib": 1024, "mib": 1024 * 1024}


def parse_size(text: str) -> int:
    """A body limit such as ``1048576``, ``512KiB`` or ``4MiB`` in bytes."""
    match = _SIZE.fullmatch(text.strip())
    size = int(match[1]) * _UNITS[(match[2] or "").lower()] if match else 0
    if size < 1:
        raise ConfigError(
            f"bad body limit {text!r}: give a positive number of bytes, optionally with KiB or "
            "MiB, such as 1048576 or 4MiB"
        )
    return size
