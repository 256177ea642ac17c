"""`ferryman registry serve`: Confluent's REST API, error codes and content type, over real HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.registry_server import RegistryServer

from ferryman.schema import EmbeddedRegistry, avro_schema
from ferryman.schema.guard import DEFAULT_MAX_BODY
from ferryman.schema.server import create_app

from .schema_models import CustomerV1, CustomerV2, CustomerV3

CT = "application/vnd.schemaregistry.v1+json"
V1, V2, V3 = (json.dumps(avro_schema(m)) for m in (CustomerV1, CustomerV2, CustomerV3))


@pytest.fixture
def api(server_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server_url, headers={"Content-Type": CT}, timeout=10) as client:
        yield client


def error_code(response: httpx.Response) -> int:
    assert response.headers["content-type"] == CT
    code: int = response.json()["error_code"]
    assert isinstance(response.json()["message"], str)
    return code


def test_register_list_and_fetch(api: httpx.Client, topic: str) -> None:
    subject = f"{topic}-value"
    r = api.post(f"/subjects/{subject}/versions", json={"schema": V1})
    assert r.status_code == 200
    assert r.headers["content-type"] == CT
    schema_id = r.json()["id"]
    assert api.post(f"/subjects/{subject}/versions", json={"schema": V1}).json() == {
        "id": schema_id
    }
    assert subject in api.get("/subjects").json()
    assert api.get(f"/subjects/{subject}/versions").json() == [1]
    version = api.get(f"/subjects/{subject}/versions/latest").json()
    assert {k: version[k] for k in ("subject", "version", "id")} == {
        "subject": subject,
        "version": 1,
        "id": schema_id,
    }
    assert json.loads(version["schema"]) == json.loads(V1)
    assert api.get(f"/subjects/{subject}/versions/1/schema").json() == json.loads(V1)
    assert json.loads(api.get(f"/schemas/ids/{schema_id}").json()["schema"]) == json.loads(V1)
    assert {"subject": subject, "version": 1} in api.get(
        f"/schemas/ids/{schema_id}/versions"
    ).json()
    looked = api.post(f"/subjects/{subject}", json={"schema": V1}).json()
    assert (looked["version"], looked["id"]) == (1, schema_id)
    assert api.delete(f"/subjects/{subject}").json() == [1]
    assert subject not in api.get("/subjects").json()


def test_confluent_error_codes(api: httpx.Client, topic: str) -> None:
    subject = f"{topic}-value"
    r = api.get(f"/subjects/{subject}/versions")
    assert (r.status_code, error_code(r)) == (404, 40401)
    r = api.post(f"/subjects/{subject}", json={"schema": V1})
    assert (r.status_code, error_code(r)) == (404, 40401)
    api.post(f"/subjects/{subject}/versions", json={"schema": V1})
    r = api.get(f"/subjects/{subject}/versions/9")
    assert (r.status_code, error_code(r)) == (404, 40402)
    r = api.get(f"/subjects/{subject}/versions/zero")
    assert (r.status_code, error_code(r)) == (422, 42202)
    r = api.post(f"/subjects/{subject}", json={"schema": V2})
    assert (r.status_code, error_code(r)) == (404, 40403)
    r = api.get("/schemas/ids/999999")
    assert (r.status_code, error_code(r)) == (404, 40403)
    r = api.post(f"/subjects/{subject}/versions", json={"schema": V3})
    assert (r.status_code, error_code(r)) == (409, 409)
    assert "tier" in r.json()["message"]
    r = api.post(f"/subjects/{subject}/versions", json={"schema": '{"type": "nope"}'})
    assert (r.status_code, error_code(r)) == (422, 42201)
    r = api.post(f"/subjects/{subject}/versions", json={"schema": "{not json"})
    assert (r.status_code, error_code(r)) == (422, 42201)
    r = api.put(f"/config/{subject}", json={"compatibility": "SIDEWAYS"})
    assert (r.status_code, error_code(r)) == (422, 42203)
    r = api.get(f"/config/{subject}")
    assert (r.status_code, error_code(r)) == (404, 40408)


def test_config_and_compatibility_test(api: httpx.Client, topic: str) -> None:
    subject = f"{topic}-value"
    assert api.get("/config").json() == {"compatibilityLevel": "BACKWARD"}
    assert api.get(f"/config/{subject}", params={"defaultToGlobal": "true"}).json() == {
        "compatibilityLevel": "BACKWARD"
    }
    r = api.put(f"/config/{subject}", json={"compatibility": "FULL"})
    assert r.json() == {"compatibility": "FULL"}
    assert api.get(f"/config/{subject}").json() == {"compatibilityLevel": "FULL"}
    api.post(f"/subjects/{subject}/versions", json={"schema": V1})
    ok = api.post(f"/compatibility/subjects/{subject}/versions/latest", json={"schema": V2})
    assert ok.json() == {"is_compatible": True}
    bad = api.post(
        f"/compatibility/subjects/{subject}/versions/1",
        params={"verbose": "true"},
        json={"schema": V3},
    ).json()
    assert bad["is_compatible"] is False
    assert any("tier" in m for m in bad["messages"])
    every = f"/compatibility/subjects/{subject}/versions"
    assert api.post(every, json={"schema": V2}).json() == {"is_compatible": True}
    assert api.post(every, json={"schema": V3}).json() == {"is_compatible": False}
    assert api.get(f"/subjects/{subject}/versions").json() == [1]


def test_serve_defaults_to_the_file_beside_the_embedded_broker(tmp_path: Path) -> None:
    broker = tmp_path / "state" / "broker.db"
    served = RegistryServer(
        None, env={"FERRYMAN_BROKER": f"embedded:{broker}", "FERRYMAN_REGISTRY": None}
    ).start()
    try:
        r = httpx.post(
            f"{served.url}/subjects/beside-value/versions", json={"schema": V1}, timeout=10
        )
        assert r.status_code == 200
    finally:
        served.stop()
    with EmbeddedRegistry(broker.parent / "registry.db") as registry:
        assert registry.subjects() == ["beside-value"]


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe\x00"])
def test_a_body_that_is_not_json_is_a_400_in_confluents_shape(
    api: httpx.Client, topic: str, body: bytes
) -> None:
    r = api.post(f"/subjects/{topic}-value/versions", content=body)
    assert (r.status_code, error_code(r)) == (400, 400)
    assert "JSON" in r.json()["message"]


# --- issue 9: the server refuses what a browser or a stranger could send ---------------------


def registered(api: httpx.Client, subject: str) -> bool:
    return subject in api.get("/subjects").json()


def test_a_foreign_host_header_is_refused_so_dns_rebinding_cannot_reach_the_registry(
    api: httpx.Client, topic: str
) -> None:
    subject = f"{topic}-value"
    api.post(f"/subjects/{subject}/versions", json={"schema": V1})
    evil = {"Host": "attacker.example"}
    r = api.delete(f"/subjects/{subject}", headers=evil)
    assert (r.status_code, error_code(r)) == (400, 400)
    assert "--allow-host" in r.json()["message"]
    r = api.put("/config", json={"compatibility": "NONE"}, headers=evil)
    assert (r.status_code, error_code(r)) == (400, 400)
    assert registered(api, subject)
    assert api.get("/config").json() == {"compatibilityLevel": "BACKWARD"}
    port = httpx.URL(str(api.base_url)).port
    for name in (f"localhost:{port}", f"127.0.0.1:{port}", "LOCALHOST", f"[::1]:{port}"):
        assert api.get("/subjects", headers={"Host": name}).status_code == 200, name


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None]
)
def test_a_write_that_is_not_json_is_a_415_so_cross_site_forms_cannot_register(
    server_url: str, topic: str, content_type: str | None
) -> None:
    subject = f"{topic}-value"
    headers = {"Content-Type": content_type} if content_type else {}
    body = json.dumps({"schema": V1}).encode()
    with httpx.Client(base_url=server_url, timeout=10) as client:
        r = client.post(f"/subjects/{subject}/versions", content=body, headers=headers)
        assert (r.status_code, error_code(r)) == (415, 415)
        assert "application/vnd.schemaregistry.v1+json" in r.json()["message"]
        r = client.put("/config", content=b'{"compatibility": "NONE"}', headers=headers)
        assert (r.status_code, error_code(r)) == (415, 415)
        assert subject not in client.get("/subjects").json()
        assert client.get("/config").json() == {"compatibilityLevel": "BACKWARD"}


@pytest.mark.parametrize(
    "content_type",
    [
        "application/vnd.schemaregistry.v1+json",
        "application/vnd.schemaregistry+json",
        "application/json",
        "Application/JSON; charset=utf-8",
    ],
)
def test_every_json_content_type_confluent_accepts_is_accepted(
    server_url: str, topic: str, content_type: str
) -> None:
    body = json.dumps({"schema": V1}).encode()
    headers = {"Content-Type": content_type}
    r = httpx.post(f"{server_url}/subjects/{topic}-value/versions", content=body, headers=headers)
    assert r.status_code == 200, r.text


def big_schema(size: int) -> str:
    """A valid Avro schema of about ``size`` bytes (a long doc)."""
    return json.dumps({"type": "record", "name": "Big", "doc": "x" * size, "fields": []})


def test_a_body_over_the_limit_is_a_413_and_nothing_is_stored(
    api: httpx.Client, server: tuple[str, Path], topic: str
) -> None:
    subject = f"{topic}-value"
    _, path = server
    before = sum(p.stat().st_size for p in path.parent.iterdir())
    r = api.post(f"/subjects/{subject}/versions", json={"schema": big_schema(2 * 1024 * 1024)})
    assert (r.status_code, error_code(r)) == (413, 413)
    assert "--max-body" in r.json()["message"]

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit must hold while streaming
        yield b'{"schema": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}'

    r = api.post(f"/subjects/{subject}/versions", content=chunked())
    assert (r.status_code, error_code(r)) == (413, 413)
    assert not registered(api, subject)
    assert sum(p.stat().st_size for p in path.parent.iterdir()) < before + 1024 * 1024
    # Just under the limit is still fine.
    ok = api.post(f"/subjects/{subject}/versions", json={"schema": big_schema(1000 * 1000)})
    assert ok.status_code == 200


def test_the_body_limit_is_checked_while_reading_not_after(tmp_path: Path) -> None:
    """Driven at the ASGI level, to count how much of an endless body the server pulls."""
    chunk, total = 64 * 1024, 160  # 10 MiB offered against the default 1 MiB limit
    pulled = 0
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b" " * chunk, "more_body": pulled < total}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/subjects/s-value/versions",
        "raw_path": b"/subjects/s-value/versions",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8081"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8081),
    }
    with EmbeddedRegistry(tmp_path / "registry.db") as registry:
        asyncio.run(create_app(registry)(scope, receive, send))
    assert sent[0]["status"] == 413
    assert pulled <= DEFAULT_MAX_BODY // chunk + 1


# --- issue 9: inputs that escaped as a bare 500 ------------------------------------------------


@pytest.mark.parametrize("suffix", ["", "/versions", "/subjects"])
def test_a_schema_id_beyond_any_integer_is_a_404_not_a_500(api: httpx.Client, suffix: str) -> None:
    r = api.get(f"/schemas/ids/{10**23}{suffix}")
    assert (r.status_code, error_code(r)) == (404, 40403)
    r = api.get(f"/schemas/ids/-5{suffix}")
    assert (r.status_code, error_code(r)) == (404, 40403)


def test_json_nested_900_deep_is_a_4xx_not_a_500(api: httpx.Client, topic: str) -> None:
    nested = "[" * 900 + "]" * 900
    r = api.post(f"/subjects/{topic}-value/versions", content=nested)
    assert (r.status_code, error_code(r)) == (422, 42201)
    r = api.post(f"/subjects/{topic}-value/versions", json={"schema": nested})
    assert (r.status_code, error_code(r)) == (422, 42201)
    assert "nests" in r.json()["message"]
    obj = '{"a":' * 900 + "1" + "}" * 900
    r = api.post(f"/subjects/{topic}-value", json={"schema": obj})
    assert (r.status_code, error_code(r)) in ((422, 42201), (404, 40401))


def nested_records(levels: int) -> str:
    schema: Any = "long"
    for i in range(levels):
        schema = {"type": "record", "name": f"R{i}", "fields": [{"name": "f", "type": schema}]}
    return json.dumps(schema)


def test_a_very_deep_schema_is_a_422_not_a_500(api: httpx.Client, topic: str) -> None:
    subject = f"{topic}-value"
    for endpoint in (
        f"/subjects/{subject}/versions",
        f"/compatibility/subjects/{subject}/versions",
    ):
        r = api.post(endpoint, json={"schema": nested_records(250)})
        assert (r.status_code, error_code(r)) == (422, 42201), endpoint
        assert "flatten" in r.json()["message"]
    # A deep but reasonable schema (30 records in records) still registers.
    assert api.post(f"/subjects/{subject}/versions", json={"schema": nested_records(30)}).is_success


def test_unknown_paths_and_methods_answer_in_confluents_error_shape(api: httpx.Client) -> None:
    r = api.get("/no/such/thing")
    assert (r.status_code, error_code(r)) == (404, 404)
    r = api.delete("/config")
    assert (r.status_code, error_code(r)) == (405, 405)


# --- issue 9: /schemas, /mode and /contexts, which tools call ------------------------------


def test_list_schemas_by_prefix_latest_and_page(api: httpx.Client, topic: str) -> None:
    key, value = f"{topic}-key", f"{topic}-value"
    api.post(f"/subjects/{key}/versions", json={"schema": '"long"'})
    api.post(f"/subjects/{value}/versions", json={"schema": V1})
    api.post(f"/subjects/{value}/versions", json={"schema": V2})
    every = api.get("/schemas", params={"subjectPrefix": topic}).json()
    assert [(s["subject"], s["version"]) for s in every] == [(key, 1), (value, 1), (value, 2)]
    assert set(every[0]) == {"subject", "version", "id", "schema"}
    assert json.loads(every[2]["schema"]) == json.loads(V2)
    latest = api.get("/schemas", params={"subjectPrefix": topic, "latestOnly": "true"}).json()
    assert [(s["subject"], s["version"]) for s in latest] == [(key, 1), (value, 2)]
    paged = api.get("/schemas", params={"subjectPrefix": topic, "offset": 1, "limit": 1}).json()
    assert paged == every[1:2]
    assert any(s["subject"] == value for s in api.get("/schemas").json())
    r = api.get("/schemas", params={"limit": "many"})
    assert (r.status_code, error_code(r)) == (400, 400)


def test_mode_and_contexts_through_confluents_client(server_url: str, topic: str) -> None:
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    with SchemaRegistryClient({"url": server_url}) as client:
        assert client.get_global_mode() == "READWRITE"
        assert client.update_global_mode("READWRITE") == "READWRITE"
        assert client.get_contexts() == ["."]
        with pytest.raises(SchemaRegistryError) as missing:
            client.get_mode(f"{topic}-value")
        assert missing.value.error_code == 40409
        with pytest.raises(SchemaRegistryError) as refused:
            client.update_global_mode("READONLY")
        assert (refused.value.http_status_code, refused.value.error_code) == (422, 42205)
        with pytest.raises(SchemaRegistryError) as invalid:
            client.update_global_mode("SIDEWAYS")
        assert invalid.value.error_code == 42204


def test_subject_mode_defaults_to_global_when_asked(api: httpx.Client, topic: str) -> None:
    r = api.get(f"/mode/{topic}-value", params={"defaultToGlobal": "true"})
    assert r.json() == {"mode": "READWRITE"}
    assert api.put(f"/mode/{topic}-value", json={"mode": "READWRITE"}).json() == {
        "mode": "READWRITE"
    }
    assert api.get("/contexts", params={"offset": 1}).json() == []


class BrokenRegistry(EmbeddedRegistry):
    """A registry whose listing fails with something no handler expects."""

    def subjects(self) -> list[str]:
        raise RuntimeError("disk on fire")


def test_an_unexpected_failure_is_a_json_500_not_a_bare_one(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    with (
        BrokenRegistry(tmp_path / "registry.db") as registry,
        TestClient(create_app(registry), base_url="http://127.0.0.1") as client,
    ):
        r = client.get("/subjects")
    assert (r.status_code, r.headers["content-type"]) == (500, CT)
    assert r.json()["error_code"] == 50001
    assert "RuntimeError" in r.json()["message"]
    assert "disk on fire" not in r.json()["message"]  # details go to the log, not to clients
