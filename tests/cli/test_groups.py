"""``ferryman groups``: a real service's group listed and described with lag, and a reset
refused while its members are live, then applied (and shown first by --dry-run)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from tests.waiting import eventually

import ferryman as fm

from .operating import Place, json_of, ok, run


@dataclass
class Visit:
    id: int
    page: str


def test_groups_list_describe_and_a_reset_refused_while_live(place: Place) -> None:
    visits = fm.EventTopic(place.name("visits"), Visit, "id", partitions=2)
    seen: list[Visit] = []

    async def main() -> None:
        async with place.service("producer") as producer:
            for i in range(6):
                await producer.emit(visits, Visit(i, "home"))
        svc = place.service("reader")
        group = svc.group

        @svc.on(visits)
        def handle(v: Visit) -> None:
            seen.append(v)

        async with svc:
            await eventually(lambda: len(seen) == 6, place.timeout, lambda: seen)

            def described() -> Any:
                data = json_of(place.invoke("groups", "describe", group, "--json"))
                parts = data["partitions"]
                done = len(parts) == 2 and all(p["lag"] == 0 for p in parts)
                return data if done and data["members"] else None

            data = await eventually(
                lambda: described(), place.timeout, "group described with no lag"
            )
            assigned = {a for m in data["members"] for a in m["assignment"]}
            assert assigned == {f"{visits.name}[0]", f"{visits.name}[1]"}
            assert sum(p["committed"] for p in data["partitions"]) == 6

            listed = json_of(place.invoke("groups", "list", "--json"))
            mine = next(g for g in listed if g["group"] == group)
            assert (mine["members"], mine["topics"], mine["lag"]) == (1, [visits.name], 0)

            refused = await asyncio.to_thread(
                place.invoke, "groups", "reset", group, "--topic", visits.name, "--to", "earliest"
            )
            assert refused.exit_code == 1
            assert "GroupBusy" in refused.stderr
            assert "live member" in refused.stderr
            assert len(refused.stderr.strip().splitlines()) == 1

        with place.admin() as admin:
            await eventually(lambda: not admin.group_members(group), place.timeout, "members")
            before = admin.committed(group, visits.name)

            dry = json_of(
                place.invoke(
                    "groups",
                    "reset",
                    group,
                    "--topic",
                    visits.name,
                    "--to",
                    "earliest",
                    "--dry-run",
                    "--json",
                )
            )
            assert {o["to"] for o in dry["offsets"]} == {0}
            assert admin.committed(group, visits.name) == before  # nothing changed

            ok(place.invoke("groups", "reset", group, "--topic", visits.name, "--to", "earliest"))
            assert set(admin.committed(group, visits.name).values()) == {0}
            lagging = json_of(place.invoke("groups", "describe", group, "--json"))
            assert sum(p["lag"] for p in lagging["partitions"]) == 6
            assert all(p["lag_seconds"] is not None for p in lagging["partitions"] if p["lag"])

            ok(
                place.invoke(
                    "groups", "reset", group, "--topic", visits.name, "--to", "2", "-p", "0"
                )
            )
            expected = min(2, admin.offsets(visits.name)[0].latest)
            assert (
                admin.committed(group, visits.name)[fm.TopicPartition(visits.name, 0)] == expected
            )
            total = 6 - expected

        # The service, started again, reads again from the reset offsets.
        seen.clear()
        again = place.service("reader")
        again.on(visits)(handle)
        async with again:
            await eventually(lambda: len(seen) == total, place.timeout, lambda: seen)

    run(main())


def test_describe_of_an_unknown_group_is_one_line(place: Place) -> None:
    result = place.invoke("groups", "describe", place.name("nobody"))
    assert result.exit_code == 1
    assert "no members and no committed offsets" in result.stderr


def test_reset_to_a_time(place: Place) -> None:
    import datetime as dt

    visits = fm.EventTopic(place.name("timed"), Visit, "id", partitions=1)
    early = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    between = (early + dt.timedelta(minutes=30)).isoformat()

    async def main() -> None:
        async with place.service("producer") as producer:
            for i in range(3):
                await producer.emit(visits, Visit(i, "old"), timestamp=early)
            for i in range(3, 5):
                await producer.emit(visits, Visit(i, "new"))

    run(main())
    group = place.name("timed-group")
    data = json_of(
        place.invoke(
            "groups",
            "reset",
            group,
            "--topic",
            visits.name,
            "--to",
            between,
            "--json",
        )
    )
    assert data["offsets"] == [{"topic": visits.name, "partition": 0, "from": None, "to": 3}]
    with place.admin() as admin:
        assert admin.committed(group, visits.name) == {fm.TopicPartition(visits.name, 0): 3}
