"""`ferryman registry serve`: Confluent's REST API, error codes and content type, over real HTTP."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ferryman.schema import EmbeddedRegistry, avro_schema

from .conftest import start_server, stop_server
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
    env = {**os.environ, "FERRYMAN_BROKER": f"embedded:{broker}"}
    env.pop("FERRYMAN_REGISTRY", None)
    proc, url = start_server(None, env)
    try:
        r = httpx.post(f"{url}/subjects/beside-value/versions", json={"schema": V1}, timeout=10)
        assert r.status_code == 200
    finally:
        stop_server(proc)
    with EmbeddedRegistry(broker.parent / "registry.db") as registry:
        assert registry.subjects() == ["beside-value"]


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe\x00"])
def test_a_body_that_is_not_json_is_a_400_in_confluents_shape(
    api: httpx.Client, topic: str, body: bytes
) -> None:
    r = api.post(f"/subjects/{topic}-value/versions", content=body)
    assert (r.status_code, error_code(r)) == (400, 400)
    assert "JSON" in r.json()["message"]
