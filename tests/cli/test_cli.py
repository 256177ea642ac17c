"""The ``ferryman`` command: one-line errors, locations on the command line, whole topic names,
non-default settings, JSON, and the start-up summary of ``ferryman run``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
from tests.waiting import wait_until
from typer.testing import CliRunner, Result

from ferryman.broker import open_broker
from ferryman.broker.embedded.admin import EmbeddedAdmin
from ferryman.cli import app, main
from ferryman.config import broker_location
from ferryman.errors import ConfigError
from ferryman.records import TopicSpec

LOCATION_VARS = ("FERRYMAN_BROKER", "FERRYMAN_REGISTRY", "FERRYMAN_DATABASE")
CLI = "import sys; from ferryman.cli import main; sys.argv[0] = 'ferryman'; main()"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No FERRYMAN_* from the caller; and `ferryman run --broker` sets them: undo that."""
    saved = dict(os.environ)
    for var in LOCATION_VARS:
        os.environ.pop(var, None)
    monkeypatch.setattr(sys, "path", list(sys.path))  # `run` adds the cwd to sys.path
    yield
    os.environ.clear()
    os.environ.update(saved)


def invoke(*args: str) -> Result:
    from ferryman.cli import _register_commands

    _register_commands()
    return CliRunner().invoke(app, list(args))


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def broker_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "kafka":
        return f"kafka://{request.getfixturevalue('kafka_bootstrap')}"
    return f"embedded:{tmp_path / 'broker.db'}"


def one_line_error(result: Result, command: str, status: int = 1) -> str:
    assert result.exit_code == status, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"ferryman {command}: ")
    assert "Traceback" not in result.output
    return lines[0]


def test_version_option() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == version("ferryman")


# -- ferryman topics ------------------------------------------------------------------------


def test_topics_reports_a_bad_broker_in_one_line() -> None:
    line = one_line_error(invoke("topics", "--broker", "redis://x"), "topics")
    assert "ConfigError" in line
    assert "kafka://host:9092" in line


def test_topics_shows_the_traceback_with_debug() -> None:
    for args in (
        ("topics", "--broker", "redis://x", "--debug"),
        ("--debug", "topics", "--broker", "redis://x"),
    ):
        result = invoke(*args)
        assert isinstance(result.exception, ConfigError), result.output


def test_topics_opens_the_file_the_services_open_despite_whitespace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 9 item 13: "embedded:PATH " opened another file ("PATH ") in ferryman topics.
    path = tmp_path / "broker.db"
    broker = open_broker(f"embedded:{path}")
    broker.admin().create_topic(TopicSpec("spaced", 1))
    broker.close()
    monkeypatch.setenv("FERRYMAN_BROKER", f"embedded:{path}  ")
    result = invoke("topics")
    assert result.exit_code == 0, result.output
    assert "spaced" in result.stdout
    assert not (tmp_path / "broker.db  ").exists()


def make_topics(broker_url: str) -> tuple[str, str]:
    """A long-named compacted topic and a plain one; returns their names."""
    suffix = uuid.uuid4().hex[:8]
    long_name = f"orders.{'placed-by-a-very-long-named-service-' * 3}{suffix}"
    plain = f"plain-{suffix}"
    broker = open_broker(broker_location(broker_url))
    try:
        admin = broker.admin()
        admin.create_topic(TopicSpec(long_name, 2, {"cleanup.policy": "compact"}))
        admin.create_topic(TopicSpec(plain, 1))
    finally:
        broker.close()
    return long_name, plain


def test_topics_prints_whole_names_and_only_settings_made_on_the_topic(broker_url: str) -> None:
    long_name, plain = make_topics(broker_url)
    result = invoke("topics", "--broker", broker_url)  # stdout is not a terminal: as when piped
    assert result.exit_code == 0, result.output
    rows = {line.split("\t")[0]: line.split("\t") for line in result.stdout.splitlines()}
    assert rows[long_name][1:3] == ["2", "0"]
    assert "cleanup.policy=compact" in rows[long_name][3]
    assert "retention.ms" not in rows[long_name][3]  # a default
    assert "retention.ms" not in rows[plain][3]


def test_topics_on_a_narrow_terminal_prints_whole_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ferryman.cli.info

    url = f"embedded:{tmp_path / 'broker.db'}"
    long_name, plain = make_topics(url)
    monkeypatch.setattr(ferryman.cli.info, "_on_terminal", lambda: True)
    monkeypatch.setenv("COLUMNS", "200")
    wide = invoke("topics", "--broker", url)
    assert "┃" in wide.stdout  # a table when the names fit
    assert long_name in wide.stdout
    monkeypatch.setenv("COLUMNS", "60")
    narrow = invoke("topics", "--broker", url)
    assert long_name in narrow.stdout
    assert plain in narrow.stdout


def test_topics_all_and_json(broker_url: str) -> None:
    long_name, plain = make_topics(broker_url)
    result = invoke("topics", "--broker", broker_url, "--json")
    assert result.exit_code == 0, result.output
    rows = {row["topic"]: row for row in json.loads(result.stdout)}
    assert rows[long_name]["partitions"] == 2
    assert rows[long_name]["config"]["cleanup.policy"] == "compact"
    assert "retention.ms" not in rows[long_name]["config"]
    every = invoke("topics", "--broker", broker_url, "--json", "--all")
    every_rows = {row["topic"]: row for row in json.loads(every.stdout)}
    assert "retention.ms" in every_rows[plain]["config"]
    assert len(every_rows[plain]["config"]) > len(rows[plain]["config"])


# -- ferryman run: errors --------------------------------------------------------------------


def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> str:
    """A module in a fresh directory made the current one; returns its (unique) name."""
    name = f"app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))
    monkeypatch.chdir(tmp_path)
    return name


def test_run_reports_a_missing_module_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    line = one_line_error(invoke("run", "no_such_module_here:svc"), "run", 2)
    assert "cannot import 'no_such_module_here'" in line


def test_run_reports_a_bad_target_in_one_line() -> None:
    assert "module:attribute" in one_line_error(invoke("run", "justamodule"), "run", 2)


def test_run_reports_an_error_in_the_users_module_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = write_module(tmp_path, monkeypatch, "import ferryman\n\nx = 1 / 0\n")
    line = one_line_error(invoke("run", f"{name}:svc"), "run")
    assert "ZeroDivisionError" in line
    assert f"{name}.py:3" in line
    result = invoke("run", "--debug", f"{name}:svc")
    assert isinstance(result.exception, ZeroDivisionError)


def test_run_reports_a_missing_dependency_of_the_users_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = write_module(tmp_path, monkeypatch, "import not_installed_anywhere\n")
    line = one_line_error(invoke("run", f"{name}:svc"), "run")
    assert "ModuleNotFoundError" in line
    assert "not_installed_anywhere" in line


def test_run_reports_no_service_found_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = write_module(tmp_path, monkeypatch, "svc = 42\n")
    assert "not a ferryman Service" in one_line_error(invoke("run", f"{name}:svc"), "run", 2)
    assert "has no attribute" in one_line_error(invoke("run", f"{name}:other"), "run", 2)


def test_run_on_kafka_without_a_registry_says_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = write_module(tmp_path, monkeypatch, "import ferryman as fm\n\nsvc = fm.Service('s')\n")
    line = one_line_error(invoke("run", "--broker", "kafka://127.0.0.1:1", f"{name}:svc"), "run")
    assert "ConfigError" in line
    assert "FERRYMAN_REGISTRY" in line


def test_run_reports_a_bad_broker_option_before_importing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = write_module(tmp_path, monkeypatch, "raise SystemExit('imported')\n")
    line = one_line_error(invoke("run", "--broker", "embedded:", f"{name}:svc"), "run")
    assert "names no file" in line


# -- ferryman run: locations on the command line and the start-up summary -------------------


SERVICE = """
from dataclasses import dataclass

import ferryman as fm


@dataclass
class Placed:
    id: int


placed = fm.EventTopic("{topic}", Placed)
svc = fm.Service("{name}")


@svc.on(placed)
def handle(event: Placed) -> None:
    pass
"""


def test_run_takes_locations_and_says_what_it_runs(broker_url: str, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    topic, name = f"placed-{suffix}", f"summary-{suffix}"
    (tmp_path / "summary_app.py").write_text(SERVICE.format(topic=topic, name=name))
    registry = tmp_path / "shared" / "registry.db"
    env = {k: v for k, v in os.environ.items() if k not in LOCATION_VARS}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CLI,
            "run",
            "--broker",
            broker_url,
            "--registry",
            f"embedded:{registry}",
            "summary_app:svc",
        ],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": os.pathsep.join(sys.path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        seen: list[str] = []
        deadline = time.monotonic() + 60
        while not any(line.startswith("  produces") for line in seen):
            assert time.monotonic() < deadline, f"no start-up summary within 60 s: {seen}"
            line = proc.stderr.readline()
            assert line, f"ferryman run ended: {seen}"
            seen.append(line.rstrip("\n"))
        text = "\n".join(seen)
        assert f"service '{name}', group '{name}'" in text
        assert f"broker    {broker_location(broker_url)}" in text
        assert f"registry  embedded:{registry}" in text
        assert f"handles   {topic}" in text
        assert f"produces  {topic}.dlq" in text
        wait_for_group(broker_url, name, topic)
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err


def wait_for_group(broker_url: str, group: str, topic: str) -> None:
    """Until the service's topic exists (it created it at start): it ran where it was told."""
    broker = open_broker(broker_location(broker_url))
    try:
        admin = broker.admin()
        wait_until(lambda: topic in admin.list_topics(), 60, f"{topic} created on {broker_url}")
    finally:
        broker.close()


def test_main_is_the_console_script(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["ferryman", "--version"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == version("ferryman")


def test_the_summary_hides_registry_credentials() -> None:
    from ferryman.cli.run import summary
    from ferryman.service import Service

    svc = Service("s", broker="kafka://k:9092", registry="https://user:secret@registry:8081")
    text = summary(svc)
    assert "secret" not in text
    assert "https://***@registry:8081" in text


def test_topics_skips_a_topic_deleted_while_it_lists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another process may delete a topic between the listing and its description: the listing
    # goes on without it rather than failing with UnknownTopic.
    path = tmp_path / "broker.db"
    broker = open_broker(f"embedded:{path}")
    broker.admin().create_topic(TopicSpec("stays", 1))
    broker.close()
    real = EmbeddedAdmin.list_topics
    monkeypatch.setattr(EmbeddedAdmin, "list_topics", lambda self: [*real(self), "vanished"])
    result = invoke("topics", "--broker", f"embedded:{path}")
    assert result.exit_code == 0, result.output
    assert "stays" in result.stdout
    assert "vanished" not in result.stdout
