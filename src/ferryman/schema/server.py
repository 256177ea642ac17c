"""The embedded registry over Confluent's Schema Registry REST API (``ferryman registry serve``).

Enough of the API for Confluent's clients and tools: subjects, versions, schemas by id, lookup,
config and compatibility tests, with Confluent's error codes and content type.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
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
from ferryman.schema.parsing import AvroSchema, parse_schema_text
from ferryman.schema.registry import RegisteredSchema, Version

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"

SUBJECT_NOT_FOUND = 40401
VERSION_NOT_FOUND = 40402
SCHEMA_NOT_FOUND = 40403
SUBJECT_CONFIG_NOT_FOUND = 40408
INCOMPATIBLE = 409
INVALID_SCHEMA = 42201
INVALID_VERSION = 42202
INVALID_COMPATIBILITY = 42203
SERVER_ERROR = 50001


class ApiError(Exception):
    """An error answered with Confluent's ``{"error_code", "message"}`` body."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return self.code if self.code < 1000 else self.code // 100


def reply(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status_code=status, media_type=CONTENT_TYPE)


Handler = Callable[[Request], Any]


def create_app(registry: EmbeddedRegistry) -> Starlette:
    """A Starlette app serving ``registry``."""

    def endpoint(fn: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            body: Any = None
            if request.method in ("POST", "PUT"):
                raw = await request.body()
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:  # not JSON, or not UTF-8 at all
                    message = 'the body is not JSON; send a JSON object such as {"schema": "..."}'
                    return reply({"error_code": 400, "message": message}, 400)
            request.state.body = body
            try:
                # SQLite calls block: run them off the event loop.
                return reply(await run_in_threadpool(fn, request))
            except ApiError as exc:
                return reply({"error_code": exc.code, "message": exc.message}, exc.status)
            except FerrymanError as exc:
                return reply({"error_code": SERVER_ERROR, "message": str(exc)}, 500)

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
        try:
            return int(request.path_params["id"])
        except ValueError as exc:
            raise ApiError(SCHEMA_NOT_FOUND, "Schema not found: the id is not a number") from exc

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
        Route("/schemas/types", endpoint(schema_types)),
        Route("/schemas/ids/{id}", endpoint(get_schema)),
        Route("/schemas/ids/{id}/versions", endpoint(get_schema_versions)),
        Route("/schemas/ids/{id}/subjects", endpoint(get_schema_subjects)),
        Route("/config", endpoint(get_config), methods=["GET"]),
        Route("/config", endpoint(put_config), methods=["PUT"]),
        Route("/config/{subject}", endpoint(get_subject_config), methods=["GET"]),
        Route("/config/{subject}", endpoint(put_subject_config), methods=["PUT"]),
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
    return Starlette(routes=routes)


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
