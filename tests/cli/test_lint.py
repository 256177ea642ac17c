"""``ferryman lint``: each design rule found on deliberately bad services, the system seen whole
across modules, --strict, and the broker's and registry's rules on both backends."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

from ferryman.records import TopicSpec

from .operating import Place, invoke, ok

MODELS = """
from dataclasses import dataclass

import ferryman as fm
from ferryman.config import ServiceConfig


@dataclass
class Customer:
    id: int
    name: str


@dataclass
class Click:
    page: str
    user: int


@dataclass
class Ask:
    text: str


@dataclass
class Answer:
    text: str
"""

OWNERS = (
    MODELS
    + """
customers = fm.EntityTopic("customers", Customer)
clicks = fm.EventTopic("clicks", Click)
asks = fm.RequestTopic("asks", Ask, reply=Answer)
orders_asks = fm.RequestTopic("orders.asks", Ask, reply=Answer)
shouting = fm.EventTopic("Shouting.Topic", Click, partition_key="page")

owner = fm.Service("owner")
owner.produces(customers, clicks, shouting, asks, orders_asks)

counter = fm.Service("counter")


@counter.on(clicks, batch=10)
def count(clicks: list[Click]) -> None:
    pass


first = fm.Service("first")
second = fm.Service("second")


@first.responder(asks)
def one(ask: Ask) -> Answer:
    return Answer("one")


@second.responder(asks)
def two(ask: Ask) -> Answer:
    return Answer("two")


deaf = fm.Service("deaf")


@deaf.on(orders_asks)
def ignore(ask: Ask) -> None:
    pass


left = fm.Service("left", config=ServiceConfig(group="shared"))
right = fm.Service("right", config=ServiceConfig(group="shared"))


@left.on(shouting)
def hear_left(c: Click) -> None:
    pass


@right.on(customers)
def hear_right(c: Customer) -> None:
    pass


system = [owner, counter, first, second, deaf, left, right]
"""
)

# Another team's module: its own declarations of the same topics.
OTHERS = (
    MODELS
    + """
@dataclass
class CustomerCopy:
    id: int
    name: str
    phone: str
    email: str | None = None


@dataclass
class Keyed:
    ref: int
    id: int
    name: str


customers = fm.EntityTopic("customers", CustomerCopy)
clicks_as_entity = fm.EntityTopic("clicks", Click, key="user")
keyed_customers = fm.EntityTopic("customers", Keyed, key="ref")

rival = fm.Service("rival")
rival.produces(fm.EntityTopic("customers", Customer))

reader = fm.Service("reader")


@reader.on(customers)
def read(c: CustomerCopy) -> None:
    pass


oddball = fm.Service("oddball")


@oddball.on(clicks_as_entity)
def odd(c: Click) -> None:
    pass


rekeyed = fm.Service("rekeyed")


@rekeyed.on(keyed_customers)
def rekey(c: Keyed) -> None:
    pass
"""
)


def write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> str:
    name = f"lint_app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))
    monkeypatch.chdir(tmp_path)
    return name


def findings(result: Result) -> list[dict[str, Any]]:
    import json

    found: list[dict[str, Any]] = json.loads(result.stdout)
    return found


def rules(found: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(f["rule"], f["severity"], f["where"]) for f in found}


def test_each_rule_on_bad_services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    owners = write(tmp_path, monkeypatch, OWNERS)
    others = write(tmp_path, monkeypatch, OTHERS)
    result = invoke(
        "lint",
        f"{owners}:system",
        f"{others}:rival",
        f"{others}:reader",
        f"{others}:oddball",
        f"{others}:rekeyed",
        "--json",
    )
    assert result.exit_code == 1
    found = findings(result)
    for f in found:
        assert f["message"]
        assert f["fix"]
    assert rules(found) == {
        ("entity-not-compacted", "error", "topic clicks"),
        ("entity-key-not-in-model", "error", "topic customers"),
        ("several-producers", "error", "topic customers"),
        ("several-responders", "error", "topic asks"),
        ("request-without-reply", "error", "topic orders.asks"),
        ("unkeyed-stateful-event", "warning", "topic clicks"),
        ("removed-field-read", "error", "topic customers"),
        ("removed-field-read", "warning", "topic customers"),
        ("topic-name-convention", "warning", "topic Shouting.Topic"),
        ("shared-group", "error", "group shared"),
    }
    messages = {(f["rule"], f["severity"], f["message"]) for f in found}

    def said(rule: str, severity: str, text: str) -> bool:
        return any(r == rule and s == severity and text in m for r, s, m in messages)

    assert said("removed-field-read", "error", "reader reads CustomerCopy.phone")
    assert said("removed-field-read", "error", "rekeyed reads Keyed.ref")
    assert said("removed-field-read", "warning", "reader reads CustomerCopy.email")
    assert said("entity-key-not-in-model", "error", "rekeyed declares key='ref'")
    assert said("entity-not-compacted", "error", "oddball declare(s) it an entity topic")
    assert said("several-producers", "error", "owner, rival")
    assert said("unkeyed-stateful-event", "warning", "count keeps batch=10")
    assert said("shared-group", "error", "left, right")

    human = invoke("lint", f"{owners}:system", f"{others}:rival")
    assert human.exit_code == 1
    assert "error several-producers topic customers" in human.stdout
    assert "fix: let one service own it" in human.stdout


def test_rules_across_services_need_the_whole_system(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    owners = write(tmp_path, monkeypatch, OWNERS)
    others = write(tmp_path, monkeypatch, OTHERS)
    alone = {f["rule"] for f in findings(invoke("lint", f"{owners}:owner", "--json"))}
    assert "several-producers" not in alone
    # The owner alone sends requests nobody in view answers.
    assert "request-without-reply" in alone
    together = findings(invoke("lint", f"{owners}:owner", f"{others}:rival", "--json"))
    assert ("several-producers", "error", "topic customers") in rules(together)


def test_strict_fails_on_warnings_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = write(
        tmp_path,
        monkeypatch,
        MODELS
        + """
events = fm.EventTopic("BadName", Click, partition_key="page")
svc = fm.Service("svc")
svc.produces(events)
""",
    )
    relaxed = invoke("lint", f"{module}:svc")
    assert relaxed.exit_code == 0
    assert "0 error(s), 1 warning(s)" in relaxed.stdout
    assert invoke("lint", f"{module}:svc", "--strict").exit_code == 1
    custom = invoke("lint", f"{module}:svc", "--strict", "--name-pattern", "[A-Za-z]+")
    assert custom.exit_code == 0, custom.stdout
    bad = invoke("lint", f"{module}:svc", "--name-pattern", "[a-")
    assert bad.exit_code == 1
    assert "is not a regular expression" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_the_demo_is_clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = write(
        tmp_path,
        monkeypatch,
        f"""
from ferryman.demo.services import build

services = build("embedded:{tmp_path / "demo.db"}", lambda service, text: None).services
""",
    )
    out = ok(invoke("lint", f"{module}:services", "--strict"))
    assert "6 service(s), 6 topic(s): 0 error(s), 0 warning(s)" in out


def test_broker_and_registry_rules(
    place: Place, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    customers, orders = place.name("lint.customers"), place.name("lint.orders")
    module = write(
        tmp_path,
        monkeypatch,
        MODELS
        + f"""
@dataclass
class Order:
    id: int
    total: float


customers = fm.EntityTopic("{customers}", Customer)
orders = fm.EntityTopic("{orders}", Order)
svc = fm.Service("{place.name("owner")}")
svc.produces(customers, orders)
reader = fm.Service("{place.name("reader")}")


@reader.on(customers)
def read(c: Customer) -> None:
    pass
""",
    )
    with place.admin() as admin:
        admin.create_topic(TopicSpec(customers, 1, {"cleanup.policy": "delete"}))
    # A registered version with a field the model has since dropped.
    from ferryman.schema.open import open_registry

    registry = open_registry(place.registry)
    try:
        registry.register(
            f"{customers}-value",
            {
                "type": "record",
                "name": "Customer",
                "fields": [
                    {"name": "id", "type": "long"},
                    {"name": "name", "type": "string"},
                    {"name": "email", "type": "string"},
                ],
            },
        )
    finally:
        registry.close()
    found = json_of_failed(place.invoke("lint", f"{module}:svc", f"{module}:reader", "--json"))
    assert rules(found) == {
        ("entity-not-compacted", "error", f"topic {customers}"),
        ("removed-field-read", "warning", f"topic {customers}"),
        ("no-schema", "warning", f"topic {orders}"),
    }
    removed = next(f for f in found if f["rule"] == "removed-field-read")
    assert "drops email" in removed["message"]
    # Without --broker and --registry (nor FERRYMAN_*, which the last command set for the
    # services it loaded) only the declarations are checked.
    monkeypatch.delenv("FERRYMAN_BROKER")
    monkeypatch.delenv("FERRYMAN_REGISTRY")
    assert findings(invoke("lint", f"{module}:svc", f"{module}:reader", "--json")) == []


def json_of_failed(result: Result) -> list[dict[str, Any]]:
    assert result.exit_code == 1, result.output
    return findings(result)


def test_a_target_that_is_not_a_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = invoke("lint", "json:dumps")
    assert result.exit_code == 2
    assert "not a ferryman Service" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_removed_fields_of_requests_and_replies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    responder = write(
        tmp_path,
        monkeypatch,
        MODELS
        + """
@dataclass
class LocalAsk:
    text: str
    lang: str


asks = fm.RequestTopic("asks", LocalAsk, reply=Answer)
svc = fm.Service("helpdesk")


@svc.responder(asks)
def answer(ask: LocalAsk) -> Answer:
    return Answer(ask.text)
""",
    )
    requester = write(
        tmp_path,
        monkeypatch,
        MODELS
        + """
@dataclass
class ScoredAnswer:
    text: str
    score: float


svc = fm.Service("web")
svc.produces(fm.RequestTopic("asks", Ask, reply=ScoredAnswer))
""",
    )
    found = findings(invoke("lint", f"{responder}:svc", f"{requester}:svc", "--json"))
    assert {(f["rule"], f["severity"], f["message"].split(",")[0]) for f in found} == {
        ("removed-field-read", "error", "helpdesk reads LocalAsk.lang"),
        ("removed-field-read", "error", "web reads the reply ScoredAnswer.score"),
    }
