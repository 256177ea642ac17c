"""``ferryman docs``: the AsyncAPI 3.0 document, validated against the official JSON Schema, and
the topology page, opened in headless Chromium, which must show every service and topic."""

from __future__ import annotations

import json
import subprocess
import textwrap
import uuid
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from .operating import invoke, ok

SYSTEM = """
from dataclasses import dataclass

import ferryman as fm


@dataclass
class Customer:
    id: int
    name: str


@dataclass
class Visit:
    customer_id: int
    page: str


@dataclass
class Ask:
    text: str


@dataclass
class Answer:
    text: str


customers = fm.EntityTopic("crm.customers", Customer, partitions=3)
visits = fm.EventTopic("web.visits", Visit, partition_key="customer_id")
asks = fm.RequestTopic("help.asks", Ask, reply=Answer)

crm = fm.Service("crm")
crm.produces(customers)
web = fm.Service("web")
web.produces(visits, asks)
helpdesk = fm.Service("helpdesk")
helpdesk.mirror(customers)


@helpdesk.responder(asks)
def answer(ask: Ask) -> Answer:
    return Answer(ask.text)


stats = fm.Service("stats")


@stats.on(visits, batch=50)
def count(visits: list[Visit]) -> None:
    pass


system = [crm, web, helpdesk, stats]
"""

SERVICES = ["crm", "web", "helpdesk", "stats"]
TOPICS = {"crm.customers": "entity", "web.visits": "event", "help.asks": "request"}


@pytest.fixture
def written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``ferryman docs`` of the system above, written into a directory."""
    module = f"docs_app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(SYSTEM))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FERRYMAN_BROKER", f"embedded:{tmp_path / 'broker.db'}")
    out = tmp_path / "site"
    result = invoke("docs", f"{module}:system", "-o", str(out), "--title", "help desk")
    ok(result)
    assert "4 service(s), 3 topic(s)" in result.stderr
    return out


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    if isinstance(node, dict) and set(node) == {"$ref"}:
        return resolve(doc, node["$ref"])  # a channel's message refers on to the component
    return node


def test_asyncapi_document_is_valid_asyncapi_3(
    written: Path, asyncapi_schema: dict[str, Any]
) -> None:
    doc = json.loads((written / "asyncapi.json").read_text())
    validator = jsonschema.Draft7Validator(asyncapi_schema)
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(doc)]
    assert errors == []
    # The validator does look inside: a wrong action is refused.
    broken = json.loads(json.dumps(doc))
    next(iter(broken["operations"].values()))["action"] = "publish"
    assert list(validator.iter_errors(broken))
    # Every reference points at something in the document.
    for ref in refs(doc):
        assert resolve(doc, ref) is not None, ref

    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] == "help desk"
    channels = doc["channels"]
    assert {c["address"] for c in channels.values()} == {*TOPICS, "help.asks.reply"}
    for channel in channels.values():
        if channel["address"] in TOPICS:
            assert channel["x-ferryman-kind"] == TOPICS[channel["address"]]
    entity = channels["crm.customers"]
    assert entity["bindings"]["kafka"]["partitions"] == 3
    assert entity["bindings"]["kafka"]["topicConfiguration"]["cleanup.policy"] == ["compact"]
    message = resolve(doc, entity["messages"]["crm.customers"]["$ref"])
    assert message["bindings"]["kafka"]["key"]["type"] == "integer"
    payload = resolve(doc, message["payload"]["$ref"])
    assert payload["schemaFormat"] == "application/vnd.apache.avro;version=1.9.0"
    assert [f["name"] for f in payload["schema"]["fields"]] == ["id", "name"]

    ops = {
        (op["x-ferryman-service"], op["action"], resolve(doc, op["channel"]["$ref"])["address"])
        for op in doc["operations"].values()
    }
    assert ops == {
        ("crm", "send", "crm.customers"),
        ("helpdesk", "receive", "crm.customers"),
        ("web", "send", "web.visits"),
        ("stats", "receive", "web.visits"),
        ("web", "send", "help.asks"),
        ("helpdesk", "receive", "help.asks"),
    }
    for op in doc["operations"].values():
        if resolve(doc, op["channel"]["$ref"])["address"] == "help.asks":
            assert resolve(doc, op["reply"]["channel"]["$ref"])["address"] == "help.asks.reply"
            reply = resolve(doc, op["reply"]["messages"][0]["$ref"])
            assert reply["name"] == "Answer"
        else:
            assert "reply" not in op
        if op["action"] == "receive":
            group = op["bindings"]["kafka"]["groupId"]["enum"]
            assert group == [op["x-ferryman-service"]]


def test_the_demo_document_is_valid_asyncapi_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, asyncapi_schema: dict[str, Any]
) -> None:
    module = f"docs_demo_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        "from ferryman.demo.services import build\n\n"
        f"services = build('embedded:{tmp_path / 'demo.db'}', lambda s, t: None).services\n"
    )
    monkeypatch.chdir(tmp_path)
    ok(invoke("docs", f"{module}:services", "-o", str(tmp_path / "site")))
    doc = json.loads((tmp_path / "site" / "asyncapi.json").read_text())
    validator = jsonschema.Draft7Validator(asyncapi_schema)
    assert [e.message[:200] for e in validator.iter_errors(doc)] == []
    assert len(doc["channels"]) == 7  # six topics and the quotes' replies


class SvgText(HTMLParser):
    """The text of every <text> in the page's SVG, and the kind of each node group."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self.kinds: dict[str, str] = {}
        self._in_svg = 0
        self._in_text = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "svg":
            self._in_svg += 1
        elif self._in_svg and tag == "text":
            self._in_text = True
            self.texts.append("")
        elif self._in_svg and tag == "g" and a.get("data-name"):
            self.kinds[a["data-name"] or ""] = a.get("data-kind") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._in_svg -= 1
        elif tag == "text":
            self._in_text = False

    def handle_data(self, data: str) -> None:
        if self._in_text:
            self.texts[-1] += data


def test_the_page_shows_every_service_and_topic_in_chromium(
    written: Path, chromium: str, tmp_path: Path
) -> None:
    page = written / "index.html"
    text = page.read_text()
    # Self-contained: nothing to fetch, nothing to run.
    assert "<script" not in text
    assert "<link" not in text
    assert " src=" not in text
    assert text.count("http://") == text.count('xmlns="http://www.w3.org/2000/svg"')
    assert "https://" not in text

    profile = tmp_path / "chromium-profile"
    browse = [chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}"]
    dom = subprocess.run(
        [*browse, "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    parsed = SvgText()
    parsed.feed(dom)
    labels = {t.strip() for t in parsed.texts}
    for name in [*SERVICES, *TOPICS]:
        assert name in labels, f"{name} is not in the rendered picture: {sorted(labels)}"
    assert {n: parsed.kinds[n] for n in TOPICS} == TOPICS
    assert {parsed.kinds[n] for n in SERVICES} == {"service"}

    shot = tmp_path / "page.png"
    subprocess.run(
        [
            *browse,
            "--hide-scrollbars",
            "--window-size=1200,800",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1200, 800)


def test_an_output_that_is_a_file_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = f"docs_app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(SYSTEM))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken").write_text("")
    result = invoke("docs", f"{module}:system", "-o", str(tmp_path / "taken"))
    assert result.exit_code == 1
    assert "-o" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
