"""docs/configuration.md is generated from the code, and this test fails when it is stale.

``python tests/test_configuration_docs.py`` writes it again. Everything in it is read from the
code: the FERRYMAN_* settings and their defaults (ferryman.config), every ServiceConfig field
with its type and default, the topic kinds' parameters, broker config and compatibility
(ferryman.topics), and the client defaults of the Kafka backend.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import sys
import textwrap
from pathlib import Path
from typing import Any

from ferryman import config, topics
from ferryman.broker.kafka.consumer import CONSUMER_DEFAULTS
from ferryman.broker.kafka.producer import PRODUCER_DEFAULTS

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def _doc(obj: Any) -> str:
    return inspect.cleandoc(obj.__doc__ or "").strip()


def _code(value: Any) -> str:
    return f"`{value!r}`" if not isinstance(value, str) else f"`{value}`"


def _field_comments() -> dict[str, str]:
    """The comments written above each ServiceConfig field (why its default is what it is)."""
    source = inspect.getsource(config.ServiceConfig)
    lines = source.splitlines()
    out: dict[str, str] = {}
    for node in ast.parse(textwrap.dedent(source)).body[0].body:  # type: ignore[attr-defined]
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            comment: list[str] = []
            row = node.lineno - 2
            while row >= 0 and lines[row].strip().startswith("#"):
                comment.insert(0, lines[row].strip().lstrip("# "))
                row -= 1
            if comment:
                out[node.target.id] = " ".join(comment)
    return out


def _default(f: dataclasses.Field[Any]) -> str:
    if f.default is not dataclasses.MISSING:
        return _code(f.default)
    if f.default_factory is not dataclasses.MISSING:
        return _code(f.default_factory())
    return "(required)"


def _type(f: dataclasses.Field[Any]) -> str:
    return f"`{f.type}`".replace("|", "\\|")


def render() -> str:
    out = [
        "# Configuration reference",
        "",
        "Generated from the code by `python tests/test_configuration_docs.py`; "
        "`tests/test_configuration_docs.py` fails when this page is stale. The README's "
        '"Where things are" explains the ideas; this page lists every setting.',
        "",
        "## Where things are: arguments, command line, environment",
        "",
        _doc(config.resolve_locations),
        "",
        "| variable | argument | default | read by |",
        "|---|---|---|---|",
        f"| `FERRYMAN_BROKER` | `broker=` / `--broker` | `{config.DEFAULT_BROKER}` "
        "| `ferryman.config.broker_location` |",
        f"| `FERRYMAN_REGISTRY` | `registry=` / `--registry` | `{config.DEFAULT_REGISTRY}` "
        "| `ferryman.config.registry_location` |",
        "| `FERRYMAN_DATABASE` | `database=` / `--database` | "
        f"`sqlite:///<broker directory>/<service>.db` (`{config.DEFAULT_DATABASE_NAME}.db` "
        "without a service) | `ferryman.config.database_location` |",
        f"| `{config.KAFKA_ENV_PREFIX}<PROPERTY>` | | | `ferryman.config.kafka_config_from_env` |",
        "",
    ]
    for fn in (
        config.broker_location,
        config.registry_location,
        config.database_location,
        config.default_database,
        config.kafka_config_from_env,
    ):
        out += [f"**`{fn.__name__}`**: " + _doc(fn).replace("\n", " "), ""]

    out += [
        "## `ServiceConfig`: how a service consumes",
        "",
        "`fm.Service(name, config=fm.ServiceConfig(...))`. A bad value is a `ConfigError` "
        "saying what to write.",
        "",
        _doc(config.ServiceConfig),
        "",
        "| field | type | default | note |",
        "|---|---|---|---|",
    ]
    comments = _field_comments()
    for f in dataclasses.fields(config.ServiceConfig):
        note = comments.get(f.name, "").replace("|", "\\|")
        out.append(f"| `{f.name}` | {_type(f)} | {_default(f)} | {note} |")
    out.append("")

    out += [
        "## Topic declarations",
        "",
        _doc(topics).split("\n\n")[0].replace("\n", " "),
        "",
        f"Default partitions: `{topics.DEFAULT_PARTITIONS}`. Key types: "
        + ", ".join(f"`{t.__name__}`" for t in topics.KEY_TYPES)
        + ". Reserved name endings: "
        + ", ".join(f"`{s}`" for s in topics.RESERVED_SUFFIXES)
        + ".",
        "",
    ]
    for kind in (topics.EntityTopic, topics.EventTopic, topics.RequestTopic):
        params = [
            f"`{p.name}`" + ("" if p.default is p.empty else f" = `{p.default!r}`")
            for p in inspect.signature(kind.__init__).parameters.values()
            if p.name != "self"
        ]
        out += [
            f"### `fm.{kind.__name__}`",
            "",
            _doc(kind).replace("\n", " "),
            "",
            f"- parameters: {', '.join(params)}",
            f"- schema compatibility: `{kind.compatibility}`",
            "- broker config it forces: "
            + (", ".join(f"`{k}={v}`" for k, v in kind.forced_config.items()) or "none"),
            "- broker config by default (yours wins): "
            + (", ".join(f"`{k}={v}`" for k, v in kind.default_config.items()) or "none"),
            "",
        ]

    out += [
        "## Kafka client defaults",
        "",
        "What the Kafka backend sets on librdkafka; `FERRYMAN_KAFKA_<PROPERTY>`, "
        "`ServiceConfig.producer_config` and `consumer_config` override them.",
        "",
        "| client | property | value |",
        "|---|---|---|",
    ]
    for client, defaults in (("producer", PRODUCER_DEFAULTS), ("consumer", CONSUMER_DEFAULTS)):
        for key, value in defaults.items():
            out.append(f"| {client} | `{key}` | `{value}` |")
    out.append("")
    return "\n".join(out)


def test_the_configuration_reference_is_current() -> None:
    assert PAGE.read_text() == render(), (
        "docs/configuration.md is stale: run `python tests/test_configuration_docs.py`"
    )


def test_every_service_config_field_is_in_the_reference() -> None:
    page = render()
    for f in dataclasses.fields(config.ServiceConfig):
        assert f"| `{f.name}` |" in page


if __name__ == "__main__":
    PAGE.write_text(render())
    sys.stdout.write(f"wrote {PAGE}\n")
