"""`ferryman registry serve` options: basic auth, extra Host names, the body limit, the warning."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import httpx
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from tests.registry_server import SERVE, RegistryServer, free_port

from ferryman.errors import ConfigError
from ferryman.schema import HttpRegistry, avro_schema
from ferryman.schema.guard import (
    ServerSettings,
    exposure_warning,
    normal_host,
    parse_auth,
    parse_size,
)

from .schema_models import CustomerV1

V1 = json.dumps(avro_schema(CustomerV1))
CT = {"Content-Type": "application/vnd.schemaregistry.v1+json"}


class Serve(Protocol):
    def __call__(self, *args: str, env: dict[str, str] | None = None) -> RegistryServer: ...


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """Start servers on ``tmp_path``'s registry file; stops any still running afterwards."""
    started: list[RegistryServer] = []

    def start(*args: str, env: dict[str, str] | None = None) -> RegistryServer:
        started.append(RegistryServer(tmp_path / "registry.db", *args, env=env))
        return started[-1].start()

    yield start
    for served in started:
        served.stop()


def test_basic_auth_with_confluents_client(serve: Serve) -> None:
    served = serve(env={"FERRYMAN_REGISTRY_AUTH": "ferry:s3cret:with-colon"})
    good = {"url": served.url, "basic.auth.user.info": "ferry:s3cret:with-colon"}
    with SchemaRegistryClient(good) as client:
        schema_id = client.register_schema("auth-value", Schema(V1, "AVRO"))
        assert json.loads(client.get_schema(schema_id).schema_str) == json.loads(V1)
    for config in ({"url": served.url}, {**good, "basic.auth.user.info": "ferry:wrong"}):
        with SchemaRegistryClient(config) as client:
            with pytest.raises(SchemaRegistryError) as refused:
                client.register_schema("auth-value", Schema(V1, "AVRO"))
            assert (refused.value.http_status_code, refused.value.error_code) == (401, 401)
            assert "basic.auth.user.info" in refused.value.error_message
    # ferryman's own HTTP registry passes the same setting through.
    with HttpRegistry(served.url, {"basic.auth.user.info": "ferry:s3cret:with-colon"}) as reg:
        assert reg.subjects() == ["auth-value"]
    in_url = served.url.replace("http://", "http://ferry:s3cret%3Awith-colon@")
    with HttpRegistry(in_url) as reg:  # as FERRYMAN_REGISTRY can say it
        assert reg.subjects() == ["auth-value"]
    r = httpx.get(served.url + "/subjects")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Basic ")
    assert r.json()["error_code"] == 401


def test_auth_on_the_command_line(serve: Serve) -> None:
    served = serve("--auth", "cli:pw")
    assert httpx.get(served.url + "/subjects", auth=("cli", "pw")).json() == []
    assert httpx.get(served.url + "/subjects", auth=("cli", "nope")).status_code == 401


def test_allow_host_adds_names_to_the_loopback_ones(serve: Serve) -> None:
    served = serve("--allow-host", "registry.internal", "--allow-host", "sr.example:8081")
    for host in ("registry.internal", "registry.internal:8081", "SR.example", "localhost"):
        assert httpx.get(served.url + "/subjects", headers={"Host": host}).status_code == 200
    r = httpx.get(served.url + "/subjects", headers={"Host": "attacker.example"})
    assert (r.status_code, r.json()["error_code"]) == (400, 400)


def test_allow_host_star_gives_up_the_host_check(serve: Serve) -> None:
    served = serve("--allow-host", "*")
    r = httpx.get(served.url + "/subjects", headers={"Host": "anything.example"})
    assert r.status_code == 200


def test_max_body_is_configurable(serve: Serve) -> None:
    served = serve("--max-body", "2KiB")
    small = json.dumps({"type": "record", "name": "S", "doc": "x" * 1000, "fields": []})
    big = json.dumps({"type": "record", "name": "B", "doc": "x" * 3000, "fields": []})
    url = served.url + "/subjects/limit-value/versions"
    assert httpx.post(url, json={"schema": small}).status_code == 200
    r = httpx.post(url, json={"schema": big})
    assert (r.status_code, r.json()["error_code"]) == (413, 413)
    assert "2048 bytes" in r.json()["message"]


def test_a_non_loopback_bind_without_auth_warns(serve: Serve) -> None:
    exposed = serve("--host", "0.0.0.0")
    exposed.stop()
    assert "without authentication" in exposed.stderr
    assert "--auth" in exposed.stderr
    guarded = serve("--host", "0.0.0.0", env={"FERRYMAN_REGISTRY_AUTH": "u:p"})
    guarded.stop()
    assert "without authentication" not in guarded.stderr
    local = serve()
    local.stop()
    assert "without authentication" not in local.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--max-body", "lots"], "--max-body"),
        (["--max-body", "0"], "positive"),
        (["--auth", "nopassword"], "USER:PASSWORD"),
        (["--auth", ":pw"], "USER:PASSWORD"),
    ],
)
def test_bad_options_are_refused_with_a_reason(tmp_path: Path, args: list[str], says: str) -> None:
    command = [sys.executable, "-c", SERVE, "registry", "serve", "--port", str(free_port())]
    command += ["--path", str(tmp_path / "registry.db"), *args]
    done = subprocess.run(command, capture_output=True, timeout=60, check=False)
    assert done.returncode == 2
    assert says in done.stderr.decode()


def test_exposure_warning_only_beyond_loopback_without_auth() -> None:
    open_settings, locked = ServerSettings(), ServerSettings(auth=("u", "p"))
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert exposure_warning(host, open_settings) is None, host
    for host in ("0.0.0.0", "::", "10.1.2.3", "myhost.example"):
        assert exposure_warning(host, open_settings) is not None, host
        assert exposure_warning(host, locked) is None, host


def test_option_parsers() -> None:
    assert parse_size("1048576") == parse_size("1MiB") == parse_size("1024 kib") == 1024 * 1024
    assert parse_auth("user:pa:ss") == ("user", "pa:ss")
    with pytest.raises(ConfigError, match="KiB or MiB"):
        parse_size("1GB")
    with pytest.raises(ConfigError, match="positive"):
        ServerSettings(max_body=0)
    assert normal_host("[::1]:8081") == normal_host("::1") == "::1"
    assert normal_host("LocalHost.:8081") == "localhost"
