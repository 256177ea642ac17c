"""The topology picture's graph and layout: a node per service and topic, an edge per use and a
reply edge per requester, and no two boxes overlapping, on the demo's six services."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

from ferryman.demo.services import build
from ferryman.system.topology import NODE_H, graph, svg
from ferryman.system.view import System


def demo_system(tmp_path: Path) -> System:
    return System.of(build(f"embedded:{tmp_path / 'broker.db'}", lambda s, t: None).services)


def test_nodes_edges_and_kinds(tmp_path: Path) -> None:
    system = demo_system(tmp_path)
    nodes, edges = graph(system)
    assert {n.label for n in nodes.values() if n.kind == "service"} == {
        "customers",
        "orders",
        "pricing",
        "analytics",
        "catalog",
        "storefront",
    }
    assert {n.label: n.kind for n in nodes.values() if n.kind != "service"} == {
        "demo.customers": "entity",
        "demo.products": "entity",
        "demo.category.assignments": "entity",
        "demo.products.enriched": "entity",
        "demo.orders.placed": "event",
        "demo.pricing.quote": "request",
    }
    uses = sum(len(v.uses) for v in system.topics.values())
    assert len([e for e in edges if e.role != "reply"]) == uses
    assert [(e.source, e.target) for e in edges if e.role == "reply"] == [
        ("service:pricing", "service:orders")
    ]
    # Data flows left to right: each topic stands right of its producers, each consumer right
    # of its topics (the reply goes back).
    for e in edges:
        if e.role != "reply":
            assert nodes[e.target].x > nodes[e.source].x, e


def test_no_two_boxes_overlap_and_all_fit(tmp_path: Path) -> None:
    nodes, _ = graph(demo_system(tmp_path))
    for a, b in combinations(nodes.values(), 2):
        apart = (
            a.x + a.width <= b.x
            or b.x + b.width <= a.x
            or a.y + NODE_H <= b.y
            or b.y + NODE_H <= a.y
        )
        assert apart, (a.label, b.label)
    picture = svg(demo_system(tmp_path))
    width = float(picture.split('width="', 1)[1].split('"', 1)[0])
    assert all(n.x + n.width <= width for n in nodes.values())
