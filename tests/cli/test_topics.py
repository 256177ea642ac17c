"""``ferryman topics``: list (plain `topics` too), describe, plan and apply against services'
declarations, with unsafe changes refused."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ferryman.records import TopicSpec

from .operating import Place, json_of, ok, run

MODULE = """
from dataclasses import dataclass

import ferryman as fm


@dataclass
class Customer:
    id: int
    name: str


customers = fm.EntityTopic("{customers}", Customer, partitions=3)
visits = fm.EventTopic("{visits}", Customer, partitions=2, config={{"retention.ms": "3600000"}})
svc = fm.Service("{service}")


@svc.on(customers)
def customer(c: Customer) -> None:
    pass


@svc.on(visits)
def visit(c: Customer) -> None:
    pass
"""


def write_module(place: Place, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    customers, visits = place.name("customers"), place.name("visits")
    module = f"topics_app_{place.suffix}"
    body = MODULE.format(customers=customers, visits=visits, service=place.name("svc"))
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(body))
    monkeypatch.chdir(tmp_path)
    return f"{module}:svc", customers


def test_plan_shows_what_apply_creates_then_nothing(
    place: Place, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target, customers = write_module(place, tmp_path, monkeypatch)
    visits = place.name("visits")

    plan = json_of(place.invoke("topics", "plan", target, "--json"))
    assert {(c["topic"], c["action"]) for c in plan} == {
        (customers, "create"),
        (f"{customers}.dlq", "create"),
        (visits, "create"),
        (f"{visits}.dlq", "create"),
    }
    by_name = {c["topic"]: c for c in plan}
    assert by_name[customers]["partitions"] == 3
    assert by_name[customers]["config"]["cleanup.policy"] == "compact"

    refused = place.invoke("topics", "apply", target)  # no terminal to confirm on, no --yes
    assert refused.exit_code == 2
    assert "--yes" in refused.stderr
    ok(place.invoke("topics", "apply", target, "--yes"))

    with place.admin() as admin:
        assert admin.describe_topic(customers).partitions == 3
        assert admin.describe_topic(visits).config["retention.ms"] == "3600000"
    assert json_of(place.invoke("topics", "plan", target, "--json")) == []
    assert "nothing to do" in ok(place.invoke("topics", "plan", target))


def test_plan_grows_partitions_and_refuses_unsafe_changes(
    place: Place, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target, customers = write_module(place, tmp_path, monkeypatch)
    visits = place.name("visits")
    with place.admin() as admin:
        # The entity topic made by hand as an event topic; the events with too few partitions.
        admin.create_topic(TopicSpec(customers, 3, {"cleanup.policy": "delete"}))
        admin.create_topic(TopicSpec(visits, 1, {"cleanup.policy": "delete"}))

    plan = {c["topic"]: c for c in json_of(place.invoke("topics", "plan", target, "--json"))}
    assert plan[customers]["action"] == "refused"
    assert "cleanup policy of an entity" in plan[customers]["details"][0]
    assert plan[visits]["action"] == "alter"
    assert plan[visits]["partitions"] == 2
    assert plan[visits]["config"] == {"retention.ms": "3600000"}

    refused = place.invoke("topics", "apply", target, "--yes")
    assert refused.exit_code == 1
    assert "refused" in refused.stderr
    assert "nothing was applied" in refused.stderr
    with place.admin() as admin:
        assert admin.describe_topic(visits).partitions == 1


def test_plan_refuses_fewer_partitions(
    place: Place, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target, customers = write_module(place, tmp_path, monkeypatch)
    with place.admin() as admin:
        admin.create_topic(TopicSpec(customers, 5, {"cleanup.policy": "compact"}))
    plan = {c["topic"]: c for c in json_of(place.invoke("topics", "plan", target, "--json"))}
    assert plan[customers]["action"] == "refused"
    assert "cannot lose partitions" in plan[customers]["details"][0]


def test_describe_shows_offsets_settings_and_subjects(place: Place) -> None:
    from dataclasses import dataclass

    import ferryman as fm

    @dataclass
    class Customer:
        id: int
        name: str

    customers = fm.EntityTopic(place.name("described"), Customer, partitions=2)

    async def main() -> None:
        async with place.service("publisher") as svc:
            for i in range(5):
                await svc.publish(customers, Customer(i, f"c{i}"))

    run(main())
    data = json_of(place.invoke("topics", "describe", customers.name, "--json"))
    assert sum(p["latest"] - p["earliest"] for p in data["partitions"]) == 5
    assert [p["partition"] for p in data["partitions"]] == [0, 1]
    assert data["config"]["cleanup.policy"] == "compact"
    assert data["subjects"]["value"]["subject"] == f"{customers.name}-value"
    assert data["subjects"]["key"]["version"] == 1
    human = ok(place.invoke("topics", "describe", customers.name))
    assert f"{customers.name}-value v1" in human

    # Plain `topics` is `topics list`.
    listed = {r["topic"] for r in json_of(place.invoke("topics", "list", "--json"))}
    assert customers.name in listed
    assert customers.name in {r["topic"] for r in json_of(place.invoke("topics", "--json"))}


def test_describe_of_an_unknown_topic_is_one_line(place: Place) -> None:
    result = place.invoke("topics", "describe", place.name("absent"))
    assert result.exit_code == 1
    assert "UnknownTopic" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
