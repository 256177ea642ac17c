"""``ferryman schema``: list, show, diff, and check/register of services' models, on the embedded
registry and over HTTP (``ferryman registry serve``), with an embedded and a Kafka broker."""

from __future__ import annotations

import importlib
import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.registry_server import RegistryServer
from typer.testing import Result

from .operating import Place, json_of, ok, run

MODULE = """
from dataclasses import dataclass

import ferryman as fm


@dataclass
class Customer:
    id: int
{fields}


@dataclass
class Ask:
    text: str


@dataclass
class Answer:
    text: str


customers = fm.EntityTopic("{customers}", Customer)
asks = fm.RequestTopic("{asks}", Ask, reply=Answer)
svc = fm.Service("{service}")
svc.produces(customers)


@svc.responder(asks)
def answer(ask: Ask) -> Answer:
    return Answer(ask.text)
"""

NAME = "    name: str"
NAME_EMAIL = "    name: str\n    email: str | None = None"
EMAIL_ONLY = "    email: str | None = None"


@pytest.fixture(params=["embedded", "http"])
def place_with_registry(
    request: pytest.FixtureRequest, place: Place, tmp_path: Path
) -> Iterator[Place]:
    """The place's broker with an embedded registry file, or one served over HTTP."""
    if request.param == "embedded":
        yield place
        return
    server = RegistryServer(tmp_path / "served.db").start()
    place.registry = server.url
    try:
        yield place
    finally:
        server.stop()


def write(place: Place, tmp_path: Path, version: int, fields: str) -> str:
    module = f"schema_app_{place.suffix}_v{version}"
    body = MODULE.format(
        fields=fields,
        customers=place.name("customers"),
        asks=place.name("asks"),
        service=place.name("svc"),
    )
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(body))
    return f"{module}:svc"


def test_check_register_list_show_diff(
    place_with_registry: Place, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    place = place_with_registry
    monkeypatch.chdir(tmp_path)
    customers, asks = place.name("customers"), place.name("asks")
    v1 = write(place, tmp_path, 1, NAME)

    checks = {c["subject"]: c for c in json_of(place.invoke("schema", "check", v1, "--json"))}
    assert set(checks) == {
        f"{customers}-key",
        f"{customers}-value",
        f"{asks}-value",
        f"{asks}.reply-value",
    }
    assert {c["verdict"] for c in checks.values()} == {"new"}
    assert checks[f"{customers}-value"]["compatibility"] == "FULL_TRANSITIVE"
    assert checks[f"{asks}-value"]["compatibility"] == "BACKWARD_TRANSITIVE"
    assert checks[f"{asks}.reply-value"]["compatibility"] == "FORWARD_TRANSITIVE"

    registered = json_of(place.invoke("schema", "register", v1, "--json"))
    assert {r["subject"]: r["version"] for r in registered}[f"{customers}-value"] == 1
    listed = {r["subject"]: r for r in json_of(place.invoke("schema", "list", "--json"))}
    assert listed[f"{customers}-value"]["compatibility"] == "FULL_TRANSITIVE"
    assert listed[f"{asks}-value"]["compatibility"] == "BACKWARD_TRANSITIVE"
    again = json_of(place.invoke("schema", "check", v1, "--json"))
    assert {c["verdict"] for c in again} == {"registered"}

    # An optional field with a default: compatible both ways, so version 2.
    v2 = write(place, tmp_path, 2, NAME_EMAIL)
    checks = {c["subject"]: c for c in json_of(place.invoke("schema", "check", v2, "--json"))}
    assert checks[f"{customers}-value"]["verdict"] == "compatible"
    ok(place.invoke("schema", "register", v2))
    shown = json_of(place.invoke("schema", "show", f"{customers}-value", "--json"))
    assert shown["version"] == 2
    assert [f["name"] for f in shown["schema"]["fields"]] == ["id", "name", "email"]
    first = json_of(place.invoke("schema", "show", f"{customers}-value", "-v", "1", "--json"))
    assert [f["name"] for f in first["schema"]["fields"]] == ["id", "name"]
    assert f"{customers}-value" in ok(place.invoke("schema", "show", f"{customers}-value"))

    diff = json_of(place.invoke("schema", "diff", f"{customers}-value", "1", "2", "--json"))
    assert diff["changes"] == ["+ Customer.email: [null, string] (default None)"]
    assert diff["backward"] == []
    assert diff["forward"] == []
    back = json_of(place.invoke("schema", "diff", f"{customers}-value", "2", "1", "--json"))
    assert back["changes"] == ["- Customer.email: [null, string]"]
    assert "+ Customer.email" in ok(place.invoke("schema", "diff", f"{customers}-value", "1", "2"))

    # Dropping a field without a default breaks FULL_TRANSITIVE: old readers need `name`.
    v3 = write(place, tmp_path, 3, EMAIL_ONLY)
    result = place.invoke("schema", "check", v3)
    assert result.exit_code == 1
    assert "incompatible" in result.stdout
    assert "Customer.name" in result.stdout
    assert "1 incompatible" in result.stderr
    checks = {
        c["subject"]: c for c in json_of_failed(place.invoke("schema", "check", v3, "--json"))
    }
    bad = checks[f"{customers}-value"]
    assert bad["verdict"] == "incompatible"
    assert any("field 'name' has no default" in r for r in bad["reasons"])
    # The module's name is the records' Avro namespace, and names match unqualified: compatible.
    assert checks[f"{asks}-value"]["verdict"] == "compatible"

    refused = place.invoke("schema", "register", v3)
    assert refused.exit_code == 1
    assert "nothing was registered" in refused.stderr
    listed = {r["subject"]: r for r in json_of(place.invoke("schema", "list", "--json"))}
    assert listed[f"{customers}-value"]["versions"] == 2


def json_of_failed(result: Result) -> Any:
    """The JSON a command printed before it exited non-zero."""
    return json.loads(result.stdout)


def test_check_sees_what_a_running_service_registered(
    place_with_registry: Place, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    place = place_with_registry
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    target = write(place, tmp_path, 1, NAME)
    module = importlib.import_module(target.partition(":")[0])

    async def publish() -> None:
        async with place.service("publisher") as svc:
            await svc.publish(module.customers, module.Customer(1, "Ada"))

    run(publish())
    checks = {c["subject"]: c for c in json_of(place.invoke("schema", "check", target, "--json"))}
    customers = place.name("customers")
    assert checks[f"{customers}-value"]["verdict"] == "registered"
    assert checks[f"{customers}-key"]["verdict"] == "registered"
    assert checks[f"{place.name('asks')}-value"]["verdict"] == "new"


def test_bad_input_is_one_line(place: Place) -> None:
    missing = place.invoke("schema", "show", place.name("absent") + "-value")
    assert missing.exit_code == 1
    assert "schema list" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    version = place.invoke("schema", "show", "x-value", "--version", "two")
    assert version.exit_code == 1
    assert "write a version number" in version.stderr
    not_service = place.invoke("schema", "check", "json:dumps")
    assert not_service.exit_code == 2
    assert "not a ferryman Service" in not_service.stderr
