"""The embedded registry over Confluent's Schema Registry REST API (``ferryman registry serve``).

Enough of the API for Confluent's clients and tools: subjects, versions, schemas by id, lookup,
config, mode, contexts and compatibility tests, with Confluent's error codes and content type.
A guard refuses foreign Host headers (DNS rebinding), non-JSON writes (cross-site forms), bodies
over a limit, and, when a password is set, requests without HTTP basic auth.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ferryman.errors import (
    ConfigError,
    FerrymanError,
    IncompatibleSchema,
    SchemaError,
    SchemaNotFound,
)
from ferryman.schema.embedded import EmbeddedRegistry
from ferryman.schema.parsing import AvroSchema, parse_schema_text
from ferryman.schema.registry import RegisteredSchema, Version

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
_log = logging.getLogger(__name__)


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


Handler = Callable[[Request], Any]


def create_app(registry: EmbeddedRegistry, settings: ServerSettings | None = None) -> Starlette:
    """A Starlette app serving ``registry``, guarded as ``settings`` say (default: loopback only)."""
    settings = settings or ServerSettings()

    def endpoint(fn: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            try:
                request.state.body = await read_body(request, settings.max_body)
                # SQLite calls block: run them off the event loop.
                return reply(await run_in_threadpool(fn, request))
            except ApiError as exc:
                return error(exc.code, exc.message, exc.status)
            except RecursionError:
                # A backstop behind MAX_SCHEMA_DEPTH: whatever nests too deeply is the input's fault.
                return error(INVALID_SCHEMA, "the request nests too deeply to process", 422)
            except FerrymanError as exc:
                return error(SERVER_ERROR, str(exc), 500)
            except Exception as exc:
                _log.exception("ferryman registry: %s %s failed", request.method, request.url.path)
                message = f"internal error ({type(exc).__name__}); the server log has the details"
                return error(SERVER_ERROR, message, 500)

        return handle

    def subject_of(request: Request) -> str:
        return str(request.path_params["subject"])

    def schema_of(request: Request) -> AvroSchema:
        body = request.state.body
        if not isinstance(body, dict) or not isinstance(body.get("schema"), str):
            raise ApiError(INVALID_SCHEMA, 'the body must be {"schema": "<schema JSON text>"}')
        kind = body.get("schemaType", "AVRO") or "AVRO"
        if kind != "AVRO":
            raise ApiError(INVALID_SCHEMA, f"schema type {kind} is not supported; only AVRO is")
        if body.get("references"):
            raise ApiError(INVALID_SCHEMA, "schema references are not supported")
        try:
            parsed = json.loads(body["schema"])
        except json.JSONDecodeError as exc:
            raise ApiError(INVALID_SCHEMA, f"the schema is not valid JSON: {exc}") from exc
        except RecursionError as exc:
            raise ApiError(INVALID_SCHEMA, too_deep("the schema")) from exc
        if depth(parsed) > MAX_SCHEMA_DEPTH:
            raise ApiError(INVALID_SCHEMA, too_deep("the schema"))
        schema: AvroSchema = parse_schema_text(parsed)
        return schema

    def version_of(request: Request) -> Version:
        raw = str(request.path_params["version"])
        if raw == "latest":
            return "latest"
        try:
            number = int(raw)
        except ValueError:
            number = 0
        if number == -1:
            return "latest"
        if number < 1 or number > 2**31 - 1:
            raise ApiError(
                INVALID_VERSION,
                f"The specified version '{raw}' is not a valid version id. Allowed values are "
                'between [1, 2^31-1] and the string "latest"',
            )
        return number

    def require_subject(subject: str) -> None:
        translate(lambda: registry.versions(subject), SUBJECT_NOT_FOUND)

    def version_body(subject: str, version: Version) -> dict[str, Any]:
        require_subject(subject)
        return as_body(translate(lambda: registry.get_version(subject, version), VERSION_NOT_FOUND))

    def list_subjects(request: Request) -> Any:
        return registry.subjects()

    def list_versions(request: Request) -> Any:
        return translate(lambda: registry.versions(subject_of(request)), SUBJECT_NOT_FOUND)

    def register(request: Request) -> Any:
        subject, schema = subject_of(request), schema_of(request)
        return {"id": translate(lambda: registry.register(subject, schema), SUBJECT_NOT_FOUND)}

    def get_version(request: Request) -> Any:
        return version_body(subject_of(request), version_of(request))

    def get_version_schema(request: Request) -> Any:
        return json.loads(version_body(subject_of(request), version_of(request))["schema"])

    def lookup(request: Request) -> Any:
        subject, schema = subject_of(request), schema_of(request)
        require_subject(subject)
        return as_body(translate(lambda: registry.lookup(subject, schema), SCHEMA_NOT_FOUND))

    def delete_subject(request: Request) -> Any:
        subject = subject_of(request)
        return translate(lambda: registry.delete_subject(subject), SUBJECT_NOT_FOUND)

    def schema_id_of(request: Request) -> int:
        raw = str(request.path_params["id"])
        try:
            schema_id = int(raw)
        except ValueError as exc:
            raise ApiError(SCHEMA_NOT_FOUND, "Schema not found: the id is not a number") from exc
        if not 1 <= schema_id <= MAX_SCHEMA_ID:
            # Out of range is simply not found (as in Confluent's), never an overflow in SQLite.
            message = f"Schema {raw} not found: schema ids are between 1 and {MAX_SCHEMA_ID}"
            raise ApiError(SCHEMA_NOT_FOUND, message)
        return schema_id

    def get_schema(request: Request) -> Any:
        schema_id = schema_id_of(request)
        schema = translate(lambda: registry.get_schema(schema_id), SCHEMA_NOT_FOUND)
        return {"schema": json.dumps(schema)}

    def get_schema_versions(request: Request) -> Any:
        schema_id = schema_id_of(request)
        pairs = translate(lambda: registry.id_versions(schema_id), SCHEMA_NOT_FOUND)
        return [{"subject": s, "version": v} for s, v in pairs]

    def get_schema_subjects(request: Request) -> Any:
        schema_id = schema_id_of(request)
        pairs = translate(lambda: registry.id_versions(schema_id), SCHEMA_NOT_FOUND)
        return sorted({s for s, _ in pairs})

    def level_of(request: Request) -> str:
        body = request.state.body
        level = body.get("compatibility") if isinstance(body, dict) else None
        if not isinstance(level, str):
            raise ApiError(INVALID_COMPATIBILITY, 'the body must be {"compatibility": "<level>"}')
        return level

    def get_config(request: Request) -> Any:
        return {"compatibilityLevel": registry.get_compatibility()}

    def put_config(request: Request) -> Any:
        level = level_of(request)
        translate(lambda: registry.set_compatibility(level), INVALID_COMPATIBILITY)
        return {"compatibility": level.upper()}

    def get_subject_config(request: Request) -> Any:
        subject = subject_of(request)
        own = registry.subject_compatibility(subject)
        if own is None:
            if request.query_params.get("defaultToGlobal", "").lower() == "true":
                return {"compatibilityLevel": registry.get_compatibility()}
            raise ApiError(
                SUBJECT_CONFIG_NOT_FOUND,
                f"Subject '{subject}' does not have subject-level compatibility configured",
            )
        return {"compatibilityLevel": own}

    def put_subject_config(request: Request) -> Any:
        subject, level = subject_of(request), level_of(request)
        translate(lambda: registry.set_compatibility(level, subject), INVALID_COMPATIBILITY)
        return {"compatibility": level.upper()}

    def verdict(request: Request, problems: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"is_compatible": not problems}
        if request.query_params.get("verbose", "").lower() == "true":
            out["messages"] = problems
        return out

    def test_compatibility(request: Request) -> Any:
        subject, version, schema = subject_of(request), version_of(request), schema_of(request)
        require_subject(subject)
        problems = translate(
            lambda: registry.test_compatibility(subject, schema, version), VERSION_NOT_FOUND
        )
        return verdict(request, problems)

    def test_compatibility_all(request: Request) -> Any:
        subject, schema = subject_of(request), schema_of(request)
        require_subject(subject)
        problems = translate(
            lambda: registry.test_compatibility_all(subject, schema), SUBJECT_NOT_FOUND
        )
        return verdict(request, problems)

    def list_schemas(request: Request) -> Any:
        params = request.query_params
        prefix = params.get("subjectPrefix", "")
        latest_only = params.get("latestOnly", "").lower() == "true"
        found: list[dict[str, Any]] = []
        for subject in registry.subjects():
            if not subject.startswith(prefix):
                continue
            try:
                versions = registry.versions(subject)
            except SchemaNotFound:
                continue  # deleted since it was listed
            for version in versions[-1:] if latest_only else versions:
                found.append(as_body(registry.get_version(subject, version)))
        return page(found, params.get("offset"), params.get("limit"))

    def mode_of(request: Request) -> str:
        body = request.state.body
        mode = body.get("mode") if isinstance(body, dict) else None
        if not isinstance(mode, str) or mode.upper() not in MODES:
            raise ApiError(
                INVALID_MODE, f'the body must be {{"mode": "<mode>"}}, one of {", ".join(MODES)}'
            )
        if mode.upper() != "READWRITE":
            raise ApiError(
                NOT_PERMITTED,
                f"mode {mode.upper()} is not supported: ferryman's registry is always READWRITE",
            )
        return "READWRITE"

    def get_mode(request: Request) -> Any:
        return {"mode": "READWRITE"}

    def put_mode(request: Request) -> Any:
        return {"mode": mode_of(request)}

    def get_subject_mode(request: Request) -> Any:
        if request.query_params.get("defaultToGlobal", "").lower() == "true":
            return {"mode": "READWRITE"}
        return no_subject_mode(request)

    def no_subject_mode(request: Request) -> Any:
        raise ApiError(
            SUBJECT_MODE_NOT_FOUND,
            f"Subject '{subject_of(request)}' does not have subject-level mode configured",
        )

    def put_subject_mode(request: Request) -> Any:
        return {"mode": mode_of(request)}

    def list_contexts(request: Request) -> Any:
        params = request.query_params
        return page(["."], params.get("offset"), params.get("limit"))

    def root(request: Request) -> Any:
        return {}

    def schema_types(request: Request) -> Any:
        return ["AVRO"]

    routes = [
        Route("/", endpoint(root)),
        Route("/subjects", endpoint(list_subjects)),
        Route("/subjects/{subject}/versions", endpoint(list_versions), methods=["GET"]),
        Route("/subjects/{subject}/versions", endpoint(register), methods=["POST"]),
        Route("/subjects/{subject}/versions/{version}", endpoint(get_version)),
        Route("/subjects/{subject}/versions/{version}/schema", endpoint(get_version_schema)),
        Route("/subjects/{subject}", endpoint(lookup), methods=["POST"]),
        Route("/subjects/{subject}", endpoint(delete_subject), methods=["DELETE"]),
        Route("/schemas", endpoint(list_schemas)),
        Route("/schemas/types", endpoint(schema_types)),
        Route("/schemas/ids/{id}", endpoint(get_schema)),
        Route("/schemas/ids/{id}/versions", endpoint(get_schema_versions)),
        Route("/schemas/ids/{id}/subjects", endpoint(get_schema_subjects)),
        Route("/config", endpoint(get_config), methods=["GET"]),
        Route("/config", endpoint(put_config), methods=["PUT"]),
        Route("/config/{subject}", endpoint(get_subject_config), methods=["GET"]),
        Route("/config/{subject}", endpoint(put_subject_config), methods=["PUT"]),
        Route("/mode", endpoint(get_mode), methods=["GET"]),
        Route("/mode", endpoint(put_mode), methods=["PUT"]),
        Route("/mode/{subject}", endpoint(get_subject_mode), methods=["GET"]),
        Route("/mode/{subject}", endpoint(put_subject_mode), methods=["PUT"]),
        Route("/mode/{subject}", endpoint(no_subject_mode), methods=["DELETE"]),
        Route("/contexts", endpoint(list_contexts)),
        Route(
            "/compatibility/subjects/{subject}/versions",
            endpoint(test_compatibility_all),
            methods=["POST"],
        ),
        Route(
            "/compatibility/subjects/{subject}/versions/{version}",
            endpoint(test_compatibility),
            methods=["POST"],
        ),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = f"HTTP {exc.status_code} {exc.detail}: {request.method} {request.url.path}"
        return error(exc.status_code, message, exc.status_code)

    return Starlette(
        routes=routes,
        middleware=[Middleware(Guard, settings=settings)],
        exception_handlers={HTTPException: http_error},
    )


def as_body(found: RegisteredSchema) -> dict[str, Any]:
    """A subject version as the REST API answers it (the schema as JSON text)."""
    return {
        "subject": found.subject,
        "version": found.version,
        "id": found.schema_id,
        "schema": json.dumps(found.schema),
    }


def translate(fn: Callable[[], Any], not_found: int) -> Any:
    """Run ``fn``, turning ferryman's errors into Confluent's error codes."""
    try:
        return fn()
    except SchemaNotFound as exc:
        raise ApiError(not_found, str(exc)) from exc
    except IncompatibleSchema as exc:
        raise ApiError(INCOMPATIBLE, str(exc)) from exc
    except ConfigError as exc:
        raise ApiError(INVALID_COMPATIBILITY, str(exc)) from exc
    except SchemaError as exc:
        raise ApiError(INVALID_SCHEMA, str(exc)) from exc


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
