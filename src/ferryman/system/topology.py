"""The system's topology as an SVG picture and a self-contained HTML page (no scripts, no
network): services and topics as nodes, producing and consuming as edges, each topic kind drawn
in its own shape and colour.

The layout is layered, left to right along the flow of data: a service that consumes nothing
stands in the first column, a topic one column right of its rightmost producer, a consumer one
right of its rightmost input; within a column, nodes sit near the nodes that feed them.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from typing import Any

from ferryman.schema.models import avro_schema
from ferryman.system.view import System, TopicView
from ferryman.topics import EntityTopic, RequestTopic

CHAR = 7.9  # width of a character of a bold 12px label, near enough for common fonts
NODE_H = 44
COL_GAP = 80
ROW_GAP = 26
MARGIN = 30
LEGEND_H = 56

KIND_STYLE = {
    # kind: (fill, stroke, dash)
    "entity": ("#e6f4ea", "#1e7d3a", ""),
    "event": ("#fff3e0", "#c66a00", ""),
    "request": ("#f3e8fd", "#7b3fb8", "6 3"),
    "topic": ("#eeeeee", "#555555", ""),
}
SERVICE_STYLE = ("#1f3a5f", "#0d2238")


@dataclass
class Node:
    """A box of the picture: a service or a topic."""

    id: str
    label: str
    kind: str  # service, entity, event, request
    tooltip: str
    rank: int = 0
    x: float = 0.0
    y: float = 0.0
    inputs: list[str] = field(default_factory=list)

    @property
    def width(self) -> float:
        return max(len(self.label) * CHAR + 28, 90)


@dataclass(frozen=True, slots=True)
class Edge:
    """An arrow: a service produces to (or requests on) a topic, or consumes it; or a reply."""

    source: str
    target: str
    role: str


def graph(system: System) -> tuple[dict[str, Node], list[Edge]]:
    """The nodes and edges of ``system``, laid out."""
    nodes: dict[str, Node] = {}
    edges: list[Edge] = []
    for svc in system.services:
        nid = f"service:{svc.name}"
        nodes[nid] = Node(nid, svc.name, "service", f"service {svc.name}, group {svc.group}")
    for view in system.topics.values():
        tid = f"topic:{view.name}"
        nodes[tid] = Node(tid, view.name, view.kind, _topic_tooltip(view))
        for use in view.uses:
            sid = f"service:{use.service}"
            if use.sends:
                edges.append(Edge(sid, tid, use.role))
            else:
                edges.append(Edge(tid, sid, use.role))
        if view.kind == "request":
            for responder in dict.fromkeys(u.service for u in view.responders):
                for requester in dict.fromkeys(u.service for u in view.requesters):
                    edges.append(Edge(f"service:{responder}", f"service:{requester}", "reply"))
    _layout(nodes, [e for e in edges if e.role != "reply"])
    return nodes, edges


def _topic_tooltip(view: TopicView) -> str:
    topic = view.topic
    lines = [f"{view.kind} topic {view.name}: {topic.partitions} partition(s)"]
    if isinstance(topic, EntityTopic):
        lines.append(f"key: {topic.key}")
    elif getattr(topic, "partition_key", None):
        lines.append(f"partition key: {getattr(topic, 'partition_key', '')}")
    lines.append(f"value: {_fields(topic.model)}")
    if isinstance(topic, RequestTopic):
        lines.append(f"reply: {_fields(topic.reply_model)}")
    return "\n".join(lines)


def _fields(model: Any) -> str:
    schema = avro_schema(model)
    if isinstance(schema, dict) and "fields" in schema:
        inner = ", ".join(f["name"] for f in schema["fields"])
        return f"{schema.get('name', '')}({inner})"
    return json.dumps(schema)


def _layout(nodes: dict[str, Node], edges: list[Edge]) -> None:
    for e in edges:
        nodes[e.target].inputs.append(e.source)
    # Longest path from the sources; a cycle (requests and their replies) stops growing after
    # as many rounds as there are nodes.
    for _ in range(len(nodes)):
        changed = False
        for e in edges:
            want = nodes[e.source].rank + 1
            if nodes[e.target].rank < want <= len(nodes):
                nodes[e.target].rank = want
                changed = True
        if not changed:
            break
    columns: dict[int, list[Node]] = {}
    for node in nodes.values():
        columns.setdefault(node.rank, []).append(node)
    x: float = MARGIN
    order: dict[str, float] = {}
    for rank in sorted(columns):
        column = columns[rank]

        def place(n: Node) -> tuple[float, str]:
            fed = [order[i] for i in n.inputs if i in order]
            return (sum(fed) / len(fed) if fed else -1.0, n.label)

        column.sort(key=place)
        width = max(n.width for n in column)
        for i, node in enumerate(column):
            node.x = x + (width - node.width) / 2
            node.y = MARGIN + LEGEND_H + i * (NODE_H + ROW_GAP)
            order[node.id] = i
        x += width + COL_GAP


def svg(system: System) -> str:
    """The topology of ``system`` as an SVG document (text, for an HTML page or a file)."""
    nodes, edges = graph(system)
    width = max((n.x + n.width for n in nodes.values()), default=300) + MARGIN
    height = max((n.y + NODE_H for n in nodes.values()), default=100) + MARGIN + 30
    width = max(width, 640)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="DejaVu Sans, Arial, sans-serif" '
        'font-size="12" role="img" aria-label="topology of the services and topics">',
        "<defs>",
        *(
            f'<marker id="arrow-{name}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
            f'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
            f'fill="{colour}"/></marker>'
            for name, colour in (("send", "#333"), ("receive", "#2b6cb0"), ("reply", "#7b3fb8"))
        ),
        "</defs>",
        f'<rect width="{width:.0f}" height="{height:.0f}" fill="white"/>',
        _legend(),
    ]
    for e in edges:
        out.append(_edge(nodes[e.source], nodes[e.target], e.role))
    for node in nodes.values():
        out.append(_node(node))
    out.append("</svg>")
    return "\n".join(out)


def _legend() -> str:
    items = [
        ("service", "service"),
        ("entity", "entity topic (compacted state)"),
        ("event", "event topic (facts)"),
        ("request", "request topic (with replies)"),
    ]
    parts = ['<g class="legend">']
    x: float = MARGIN
    for kind, text in items:
        demo = Node(f"legend:{kind}", "", kind, text)
        demo.x, demo.y = x, MARGIN - 8
        parts.append(_shape(demo, 26, 18))
        parts.append(f'<text x="{x + 32}" y="{MARGIN + 5}" fill="#333">{html.escape(text)}</text>')
        x += 32 + len(text) * CHAR * 0.85 + 24
    parts.append(
        f'<text x="{MARGIN}" y="{MARGIN + 32}" fill="#555">arrows: produces / requests '
        "(black), consumes (blue), replies (dashed purple)</text>"
    )
    parts.append("</g>")
    return "".join(parts)


def _shape(node: Node, w: float, h: float) -> str:
    x, y = node.x, node.y
    if node.kind == "service":
        fill, stroke = SERVICE_STYLE
        return (
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" rx="8" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>'
        )
    fill, stroke, dash = KIND_STYLE.get(node.kind, KIND_STYLE["topic"])
    dashes = f' stroke-dasharray="{dash}"' if dash else ""
    if node.kind == "entity":  # a table: a box with a header band
        band = min(7.0, h / 4)
        return (
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="2"/>'
            f'<line x1="{x:.1f}" y1="{y + band:.1f}" x2="{x + w:.1f}" y2="{y + band:.1f}" '
            f'stroke="{stroke}" stroke-width="1.5"/>'
        )
    if node.kind == "event":  # an arrow-like pentagon: a fact moving on
        tip = min(12.0, w / 4)
        points = (
            f"{x:.1f},{y:.1f} {x + w - tip:.1f},{y:.1f} {x + w:.1f},{y + h / 2:.1f} "
            f"{x + w - tip:.1f},{y + h:.1f} {x:.1f},{y + h:.1f}"
        )
        return f'<polygon points="{points}" fill="{fill}" stroke="{stroke}" stroke-width="2"/>'
    return (  # a request: a dashed pill
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" rx="{h / 2:.1f}" '
        f'fill="{fill}" stroke="{stroke}" stroke-width="2"{dashes}/>'
    )


def _node(node: Node) -> str:
    colour = "white" if node.kind == "service" else "#111"
    kind = "service" if node.kind == "service" else f"{node.kind} topic"
    cx, cy = node.x + node.width / 2, node.y + NODE_H / 2
    return (
        f'<g class="node {node.kind}" data-kind="{node.kind}" '
        f'data-name="{html.escape(node.label)}">'
        f"<title>{html.escape(node.tooltip)}</title>"
        + _shape(node, node.width, NODE_H)
        + f'<text x="{cx:.1f}" y="{cy + 1:.1f}" text-anchor="middle" fill="{colour}" '
        f'font-weight="bold">{html.escape(node.label)}</text>'
        f'<text x="{cx:.1f}" y="{cy + 14:.1f}" text-anchor="middle" fill="{colour}" '
        f'font-size="9" opacity="0.8">{kind}</text>'
        "</g>"
    )


def _edge(a: Node, b: Node, role: str) -> str:
    style = {
        "produces": ("#333", "", "send"),
        "requests": ("#333", "", "send"),
        "reply": ("#7b3fb8", ' stroke-dasharray="5 4"', "reply"),
    }.get(role, ("#2b6cb0", "", "receive"))
    colour, dash, marker = style
    if b.x > a.x:  # forward: right side to left side
        x1, y1 = a.x + a.width, a.y + NODE_H / 2
        x2, y2 = b.x, b.y + NODE_H / 2
        bend = (x2 - x1) / 2
        path = f"M{x1:.1f},{y1:.1f} C{x1 + bend:.1f},{y1:.1f} {x2 - bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
    else:  # backward (a reply): under the boxes, bottom to bottom
        x1, y1 = a.x + a.width / 2, a.y + NODE_H
        x2, y2 = b.x + b.width / 2, b.y + NODE_H
        drop = max(y1, y2) + 40
        path = f"M{x1:.1f},{y1:.1f} C{x1:.1f},{drop:.1f} {x2:.1f},{drop:.1f} {x2:.1f},{y2:.1f}"
    return (
        f'<path class="edge {role}" d="{path}" fill="none" stroke="{colour}" '
        f'stroke-width="1.6"{dash} marker-end="url(#arrow-{marker})"/>'
    )


def page(system: System, title: str, asyncapi_file: str | None = "asyncapi.json") -> str:
    """A self-contained HTML page: the picture, then each topic and each service in tables."""
    rows = []
    for view in system.topics.values():
        topic = view.topic
        key = topic.key if isinstance(topic, EntityTopic) else getattr(topic, "partition_key", None)
        reply = (
            f"<br>reply: {html.escape(_fields(topic.reply_model))}"
            if isinstance(topic, RequestTopic)
            else ""
        )
        senders = ", ".join(dict.fromkeys(u.service for u in view.uses if u.sends)) or "-"
        readers = ", ".join(dict.fromkeys(u.service for u in view.consumers)) or "-"
        rows.append(
            f'<tr><td><code>{html.escape(view.name)}</code></td><td class="{view.kind}">'
            f"{view.kind}</td><td>{topic.partitions}</td><td>{html.escape(str(key or '-'))}</td>"
            f"<td>{html.escape(_fields(topic.model))}{reply}</td>"
            f"<td>{html.escape(senders)}</td><td>{html.escape(readers)}</td></tr>"
        )
    services = []
    for svc in system.services:
        uses = system.uses_of(svc.name)
        items = "".join(
            f"<li>{html.escape(u.role)} <code>{html.escape(u.topic.name)}</code>"
            + (f" ({html.escape(u.handler)})" if u.handler else "")
            + "</li>"
            for u in uses
        )
        services.append(
            f"<h3>{html.escape(svc.name)} <small>group {html.escape(svc.group)}</small></h3>"
            f"<ul>{items or '<li>(no topics declared)</li>'}</ul>"
        )
    link = (
        f'<p>The AsyncAPI 3.0 document: <a href="{html.escape(asyncapi_file)}">'
        f"{html.escape(asyncapi_file)}</a></p>"
        if asyncapi_file
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>
body {{ font-family: "DejaVu Sans", Arial, sans-serif; margin: 24px; color: #111; }}
table {{ border-collapse: collapse; margin: 12px 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }}
th {{ background: #f5f5f5; }}
td.entity {{ color: #1e7d3a; }} td.event {{ color: #c66a00; }} td.request {{ color: #7b3fb8; }}
figure {{ margin: 0; overflow-x: auto; }}
small {{ color: #666; font-weight: normal; }}
</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p>{len(system.services)} service(s), {len(system.topics)} topic(s), from the services'
declarations (generated by <code>ferryman docs</code>).</p>
<figure id="topology">
{svg(system)}
</figure>
{link}
<h2>Topics</h2>
<table>
<tr><th>topic</th><th>kind</th><th>partitions</th><th>key</th><th>value (fields)</th>
<th>sent by</th><th>consumed by</th></tr>
{"".join(rows)}
</table>
<h2>Services</h2>
{"".join(services)}
</body>
</html>
"""
