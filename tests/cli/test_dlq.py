"""``ferryman dlq``: dead letters made by a real service's failing handler are listed, shown,
counted by a dry run, and replayed to a service that then handles them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from tests.waiting import eventually

import ferryman as fm

from .operating import Place, json_of, lines_of, ok, run


@dataclass
class Order:
    id: int
    item: str


class OutOfStock(Exception):
    pass


def test_dead_letters_are_listed_shown_and_replayed_to_a_service(place: Place) -> None:
    orders = fm.EventTopic(place.name("orders"), Order, "id", partitions=2)
    dlq = f"{orders.name}.dlq"
    broken = {"on": True}
    handled: list[Order] = []

    async def main() -> None:
        svc = place.service("shop")

        @svc.on(orders)
        def handle(order: Order) -> None:
            if broken["on"]:
                raise OutOfStock(order.item) if order.id % 2 else ValueError(order.item)
            handled.append(order)

        async with place.service("front") as front:
            for i in range(4):
                await front.emit(orders, Order(i, f"item{i}"), headers={"trace": f"t{i}"})
        async with svc:
            with place.admin() as admin:
                await eventually(
                    lambda: sum(o.latest for o in admin.offsets(dlq).values()) == 4,
                    place.timeout,
                    "four dead letters",
                    ignore=(fm.errors.UnknownTopic,),
                )
            listed = json_of(place.invoke("dlq", "list", dlq, "--json"))
            # The original coordinates: every order's own partition and offset, once each.
            assert len({(d["partition"], d["offset"]) for d in listed}) == 4
            assert {d["topic"] for d in listed} == {orders.name}
            assert {d["exception"] for d in listed} == {"ValueError", f"{__name__}.OutOfStock"}
            assert {d["attempts"] for d in listed} == {1}
            assert {d["group"] for d in listed} == {svc.group}

            shown = json_of(
                place.invoke("dlq", "show", dlq, "--where", "exception=ValueError", "--json")
            )
            assert sorted(d["value"]["id"] for d in shown) == [0, 2]
            assert all("Traceback" in d["traceback"] for d in shown)
            human = ok(place.invoke("dlq", "show", dlq, "--where", "key=1"))
            assert "OutOfStock: item1" in human

            dry = json_of(
                place.invoke(
                    "dlq", "replay", dlq, "--where", "exception=OutOfStock", "--dry-run", "--json"
                )
            )
            assert dry == {"dry_run": True, "replayed": 0, "would_replay": {orders.name: 2}}

            broken["on"] = False
            replayed = await asyncio.to_thread(
                place.invoke,
                "dlq",
                "replay",
                dlq,
                "--where",
                "exception=OutOfStock",
                "--yes",
                "--json",
            )
            assert json_of(replayed)["replayed"] == 2
            await eventually(lambda: len(handled) == 2, place.timeout, lambda: handled)
            assert sorted(o.id for o in handled) == [1, 3]

        again = lines_of(place.invoke("tail", orders.name, "--json", "-n", "2"))
        for record in again:
            names = dict(record["headers"])
            assert names["ferryman.replayed-from"].startswith(f"{dlq}[")
            assert names["trace"] == f"t{record['value']['id']}"
            assert not any(n.startswith("ferryman.dlq.") for n in names)

    run(main())


def test_replay_without_a_yes_off_a_terminal_sends_nothing(place: Place) -> None:
    orders = fm.EventTopic(place.name("unconfirmed"), Order, "id", partitions=1)
    dlq = f"{orders.name}.dlq"

    async def main() -> None:
        svc = place.service("fails")

        @svc.on(orders)
        def handle(order: Order) -> None:
            raise ValueError("no")

        async with svc:
            await svc.emit(orders, Order(1, "x"))
            with place.admin() as admin:
                await eventually(
                    lambda: admin.offsets(dlq)[0].latest == 1,
                    place.timeout,
                    "a dead letter",
                    ignore=(fm.errors.UnknownTopic,),
                )

    run(main())
    result = place.invoke("dlq", "replay", dlq)
    assert result.exit_code == 2
    assert "1 dead letter(s) to replay" in result.stderr
    assert "--yes" in result.stderr
    with place.admin() as admin:
        assert admin.offsets(orders.name)[0].latest == 1


def test_bad_where_and_a_topic_that_is_no_dlq_are_one_line(place: Place) -> None:
    bad = place.invoke("dlq", "list", "orders.dlq", "--where", "colour=red")
    assert bad.exit_code == 1
    assert "FIELD=VALUE" in bad.stderr
    nodlq = place.invoke("dlq", "list", "orders")
    assert "name it as <topic>.dlq" in nodlq.stderr
