"""What tools read from declarations: ``Service.uses()`` (each role), ``produces()``, the system
view that joins services' declarations by topic, and the field changes ``schema diff`` lists."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from ferryman.errors import ConfigError
from ferryman.service.core import Service
from ferryman.system.schemas import field_changes
from ferryman.system.view import System
from ferryman.topics import EntityTopic, EventTopic, RequestTopic


@dataclass
class Customer:
    id: int
    name: str


@dataclass
class Visit:
    customer_id: int
    page: str


customers = EntityTopic("view.customers", Customer)
visits = EventTopic("view.visits", Visit)
asks = RequestTopic("view.asks", Visit, reply=Customer)


def service(name: str, tmp_path: Path) -> Service:
    return Service(name, broker=f"embedded:{tmp_path / 'broker.db'}")


def test_uses_name_every_role(tmp_path: Path) -> None:
    svc = service("all", tmp_path)
    svc.produces(customers)
    svc.mirror(EntityTopic("view.others", Customer))

    @svc.on(visits, batch=20)
    def count(vs: list[Visit]) -> None:
        pass

    @svc.responder(asks)
    def answer(v: Visit) -> Customer:
        return Customer(v.customer_id, v.page)

    other = EventTopic("view.booked", Visit)

    @svc.on(other)
    def book(v: Visit, session: Session) -> None:
        pass

    uses = {u.topic.name: u for u in svc.uses()}
    assert {name: u.role for name, u in uses.items()} == {
        "view.customers": "produces",
        "view.others": "mirrors",
        "view.visits": "handles",
        "view.asks": "responds",
        "view.booked": "handles",
    }
    assert uses["view.visits"].batch == 20
    assert not uses["view.visits"].keeps_state
    assert uses["view.visits"].handler.endswith("count")
    assert uses["view.others"].keeps_state
    assert uses["view.others"].batch is None  # the mirror's own chunks are not a user's batch
    assert uses["view.booked"].keeps_state
    assert uses["view.booked"].batch is None


def test_produces_declares_and_requests_are_told_apart(tmp_path: Path) -> None:
    svc = service("sender", tmp_path)
    svc.produces(visits, asks)
    assert {(u.topic.name, u.role) for u in svc.uses()} == {
        ("view.visits", "produces"),
        ("view.asks", "requests"),
    }
    # Another declaration of a topic the service declared already is refused, as for sends.
    with pytest.raises(ConfigError, match="two declarations"):
        svc.produces(EventTopic("view.visits", Customer))


def test_the_view_keeps_each_services_declaration_and_picks_the_owners(tmp_path: Path) -> None:
    @dataclass
    class CustomerCopy:
        id: int

    owner, reader = service("owner", tmp_path), service("reader", tmp_path)
    owner.produces(customers)
    copy = EntityTopic("view.customers", CustomerCopy)

    @reader.on(copy)
    def read(c: CustomerCopy) -> None:
        pass

    system = System.of([reader, owner, reader])
    assert [s.name for s in system.services] == ["reader", "owner"]
    view = system.topics["view.customers"]
    assert view.topic is customers  # the producer's declaration, though the reader came first
    assert [u.topic for u in view.uses] == [copy, customers]
    assert [u.service for u in view.consumers] == ["reader"]


def test_field_changes_by_path() -> None:
    old = {
        "type": "record",
        "name": "Order",
        "fields": [
            {"name": "id", "type": "long"},
            {"name": "note", "type": "string"},
            {
                "name": "address",
                "type": {
                    "type": "record",
                    "name": "Address",
                    "fields": [{"name": "zip", "type": "string"}],
                },
            },
            {"name": "qty", "type": "int", "default": 1},
        ],
    }
    new = {
        "type": "record",
        "name": "Order",
        "fields": [
            {"name": "id", "type": "string"},
            {
                "name": "address",
                "type": {
                    "type": "record",
                    "name": "Address",
                    "fields": [
                        {"name": "zip", "type": "string"},
                        {"name": "city", "type": ["null", "string"], "default": None},
                    ],
                },
            },
            {"name": "qty", "type": "int", "default": 2},
        ],
    }
    assert field_changes(old, new) == [
        "~ Order.id: long -> string",
        "- Order.note: string",
        "+ Order.address.city: [null, string] (default None)",
        "~ Order.qty: default 1 -> 2",
    ]
    assert field_changes(new, new) == []
    colour = {"type": "enum", "name": "Colour", "symbols": ["RED", "GREEN"]}
    recoloured = {"type": "enum", "name": "Colour", "symbols": ["RED", "BLUE"]}
    assert field_changes(colour, recoloured) == [
        "~ Colour: enum symbols added: BLUE",
        "~ Colour: enum symbols removed: GREEN",
    ]
