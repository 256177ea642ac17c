"""assert_sent's matching and its report of the closest record, on values of every kind."""

from __future__ import annotations

from dataclasses import dataclass

import pydantic

from ferryman.runtime.message import Message
from ferryman.testing import message
from ferryman.testing.matching import ANY, differences, matches, mismatch_report


@dataclass
class Address:
    city: str
    zip: str


@dataclass
class Customer:
    id: int
    name: str
    address: Address


class Price(pydantic.BaseModel):
    sku: str
    cents: int


def at(value: object, key: object = None, offset: int = 0) -> Message[object]:
    return message(value, key=key, topic="t", offset=offset)


def test_nested_fields_are_compared_by_their_path() -> None:
    want = Customer(1, "Ada", Address("Paris", "75001"))
    got = Customer(1, "Ada", Address("Lyon", "75001"))
    assert differences(want, got) == [("address.city", "Paris", "Lyon")]
    assert differences({"address": {"zip": "75001"}}, got) == []


def test_pydantic_models_and_partial_dicts() -> None:
    assert matches(Price(sku="mug", cents=625), ANY, at(Price(sku="mug", cents=625)))
    assert not matches(Price(sku="mug", cents=600), ANY, at(Price(sku="mug", cents=625)))
    assert matches({"cents": 625}, ANY, at(Price(sku="mug", cents=625)))
    assert differences({"colour": "red"}, Price(sku="mug", cents=1)) == [
        ("colour", "red", "<no such field>")
    ]


def test_keys_tombstones_and_predicates() -> None:
    assert matches(None, 7, at(None, key=7))
    assert not matches(None, 7, at(Price(sku="a", cents=1), key=7))
    assert not matches({"cents": 1}, 8, at(Price(sku="a", cents=1), key=7))
    assert matches(lambda p: p.cents > 0, ANY, at(Price(sku="a", cents=1)))


def test_the_report_picks_the_closest_record() -> None:
    sent = [
        at(Customer(2, "Bob", Address("Rome", "00100")), key=2, offset=0),
        at(Customer(1, "Ada", Address("Lyon", "75001")), key=1, offset=1),
    ]
    report = mismatch_report(
        "customers", Customer(1, "Ada", Address("Paris", "75001")), 1, sent, []
    )
    assert "the closest, at partition 0 offset 1 (key 1)" in report
    assert "    address.city: expected 'Paris', sent 'Lyon'" in report
    assert "Bob" not in report.split("differs in:")[1]


def test_the_report_of_a_predicate_and_of_a_wrong_type() -> None:
    def expensive(p: Price) -> bool:
        return p.cents > 1000

    report = mismatch_report("prices", expensive, ANY, [at(Price(sku="a", cents=1))], [])
    assert "matches a value for which expensive is true" in report
    assert "    value: expensive returned false for it" in report
    report = mismatch_report(
        "prices", Customer(1, "A", Address("x", "y")), ANY, [at(Price(sku="a", cents=1))], []
    )
    assert "type: expected Customer, sent Price" in report
