"""The embedded registry over Confluent's Schema Registry REST API (``ferryman registry serve``).

Enough of the API for Confluent's clients and tools: subjects, versions, schemas by id, lookup,
config, mode, contexts and compatibility tests, with Confluent's error codes and content type.
A guard refuses foreign Host headers (DNS rebinding), non-JSON writes (cross-site forms), bodies
over a limit, and, when a password is set, requests without HTTP basic auth.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ferryman.errors import (
    ConfigError,
    FerrymanError,
    IncompatibleSchema,
    SchemaError,
    SchemaNotFound,
)
from ferryman.schema.embedded import EmbeddedRegistry
from ferryman.schema.guard import (
    INCOMPATIBLE,
    INVALID_COMPATIBILITY,
    INVALID_MODE,
    INVALID_SCHEMA,
    INVALID_VERSION,
    MAX_SCHEMA_DEPTH,
    MAX_SCHEMA_ID,
    MODES,
    NOT_PERMITTED,
    SCHEMA_NOT_FOUND,
    SERVER_ERROR,
    SUBJECT_CONFIG_NOT_FOUND,
    SUBJECT_MODE_NOT_FOUND,
    SUBJECT_NOT_FOUND,
    VERSION_NOT_FOUND,
    ApiError,
    Guard,
    ServerSettings,
    depth,
    error,
    page,
    read_body,
    reply,
    too_deep,
)
from ferryman.schema.parsing import AvroSchema, parse_schema_text
from ferryman.schema.registry import RegisteredSchema, Version

_log = logging.getLogger("ferryman.schema.server")
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
