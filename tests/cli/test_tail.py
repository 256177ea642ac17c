"""``ferryman tail`` and ``ferryman produce``: decoded through the registry, and a round trip
that a real service then handles."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from tests.waiting import eventually

import ferryman as fm

from .operating import Place, lines_of, ok, run


@dataclass
class Customer:
    id: int
    name: str
    email: str | None = None


def publish(place: Place, topic: fm.EntityTopic[Customer], count: int) -> None:
    async def main() -> None:
        async with place.service("owner") as svc:
            for i in range(count):
                await svc.publish(topic, Customer(i, f"c{i}"), headers={"trace": f"t{i}"})

    run(main())


def test_tail_decodes_keys_values_and_headers(place: Place) -> None:
    customers = fm.EntityTopic(place.name("tailed"), Customer, partitions=3)
    publish(place, customers, 12)

    last = lines_of(place.invoke("tail", customers.name, "--json"))
    assert len(last) == 10  # the default -n
    every = lines_of(
        place.invoke("tail", customers.name, "--json", "--from", "earliest", "-n", "0")
    )
    assert sorted(r["key"] for r in every) == list(range(12))
    first = next(r for r in every if r["key"] == 3)
    assert first["value"] == {"id": 3, "name": "c3", "email": None}
    assert ["trace", "t3"] in first["headers"]
    assert any(name == "ferryman.message-id" for name, _ in first["headers"])

    one = lines_of(place.invoke("tail", customers.name, "--json", "--key", "7"))
    assert [r["value"]["name"] for r in one] == ["c7"]
    part = first["partition"]
    only = lines_of(
        place.invoke("tail", customers.name, "--json", "-n", "0", "--partition", str(part))
    )
    assert only
    assert {r["partition"] for r in only} == {part}
    later = lines_of(
        place.invoke("tail", customers.name, "--json", "-n", "0", "-p", str(part), "--from", "1")
    )
    assert [r["offset"] for r in later] == [r["offset"] for r in only if r["offset"] >= 1]

    human = ok(place.invoke("tail", customers.name, "-n", "1", "--key", "5"))
    assert '"name": "c5"' in human
    assert "trace: t5" in human


def test_produce_round_trips_what_tail_prints_and_a_service_handles_it(place: Place) -> None:
    customers = fm.EntityTopic(place.name("produced"), Customer, partitions=2)
    publish(place, customers, 1)  # the owner registers the schemas
    lines = [
        json.dumps({"key": 10 + i, "value": {"id": 10 + i, "name": f"p{i}", "email": None}})
        for i in range(3)
    ]
    lines.append(
        json.dumps(
            {
                "key": 13,
                "value": {"id": 13, "name": "h", "email": "a@b"},
                "headers": [["origin", "cli"]],
            }
        )
    )
    sent = place.invoke("produce", customers.name, "--json", stdin="\n".join(lines) + "\n")
    assert lines_of(sent) == [{"topic": customers.name, "sent": 4}]

    got = lines_of(place.invoke("tail", customers.name, "--json", "-n", "0", "--from", "earliest"))
    by_key = {r["key"]: r for r in got}
    assert by_key[13]["value"]["email"] == "a@b"
    assert ["origin", "cli"] in by_key[13]["headers"]
    # What tail prints, produce reads: the same records again.
    again = place.invoke("produce", customers.name, stdin="\n".join(json.dumps(r) for r in got))
    assert again.exit_code == 0, again.stderr

    seen: list[Customer] = []

    async def main() -> None:
        svc = place.service("reader")

        @svc.on(customers)
        def handle(c: Customer) -> None:
            seen.append(c)

        async with svc:
            await eventually(lambda: len(seen) >= 10, place.timeout, lambda: seen)

    run(main())
    assert Customer(13, "h", "a@b") in seen


def test_produce_refuses_bad_lines_by_number_and_sends_nothing(place: Place) -> None:
    customers = fm.EntityTopic(place.name("refused"), Customer, partitions=1)
    publish(place, customers, 1)
    good = json.dumps({"key": 1, "value": {"id": 1, "name": "ok", "email": None}})
    cases = {
        "not json": "not JSON",
        json.dumps({"key": 2, "value": {"id": "two", "name": "x", "email": None}}): "does not fit",
        json.dumps({"value": {"id": 2, "name": "x", "email": None}}): "give a key",
        json.dumps({"key": 2, "val": {}}): "write an object",
    }
    for bad, reason in cases.items():
        result = place.invoke("produce", customers.name, stdin=f"{good}\n\n{bad}\n{good}\n")
        assert result.exit_code == 1, result.stdout
        assert "line 3" in result.stderr
        assert reason in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    with place.admin() as admin:
        assert admin.offsets(customers.name)[0].latest == 1  # only the owner's record

    unknown = place.invoke("produce", place.name("no-schema"), stdin=good)
    assert unknown.exit_code == 1
    assert "no schema is registered" in unknown.stderr


def test_tail_follow_prints_records_as_they_arrive(place: Place) -> None:
    customers = fm.EntityTopic(place.name("followed"), Customer, partitions=1)
    publish(place, customers, 1)

    async def main() -> list[Any]:
        follower = asyncio.create_task(
            asyncio.to_thread(
                place.invoke,
                "tail",
                customers.name,
                "--json",
                "--follow",
                "-n",
                "3",
                "--from",
                "1",  # after the one record there is
            )
        )
        async with place.service("late") as svc:
            for i in range(3):
                await svc.publish(customers, Customer(100 + i, "late"))
        result = await asyncio.wait_for(follower, place.timeout)
        return lines_of(result)

    records = run(main())
    assert [r["key"] for r in records] == [100, 101, 102]
