"""The README's and the docs' code is run as a test, so what a user copies keeps working.

A Python block whose first line is a comment naming a file (``# shop/topics.py: ...``) is a
file of the example project: it is written there, then run the way the text says (the README's
two terminals, its test file under pytest). Any other block of a page is executed, in order, in
one namespace per page, as in ``python -m asyncio`` (top-level ``await`` allowed), in a fresh
directory with a fresh embedded broker. Every page's blocks run: none is only compiled.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.testing.installed import REPO, install_checkout
from tests.waiting import wait_until

README = REPO / "README.md"
DOCS = REPO / "docs"

_FILE = re.compile(r"#\s*([\w/.-]+\.py)\b")


def python_blocks(page: Path) -> list[str]:
    """The page's Python blocks, dedented (a block inside a list item is indented)."""
    found = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.DOTALL)
    return [textwrap.dedent(block) for block in found]


def bash_blocks(page: Path) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.DOTALL)


def file_of(block: str) -> str | None:
    """The project file a block is, when its first line names one."""
    match = _FILE.match(block.splitlines()[0]) if block.strip() else None
    return match.group(1) if match else None


def write_project(page: Path, root: Path) -> list[str]:
    """Write ``page``'s file blocks under ``root`` (packages get an ``__init__.py``)."""
    written = []
    for block in python_blocks(page):
        name = file_of(block)
        if name is None:
            continue
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent != root and path.parent.name != "tests":
            (path.parent / "__init__.py").touch()
        path.write_text(block)
        written.append(name)
    return written


def clean_env(**extra: str) -> dict[str, str]:
    """This checkout's code, no FERRYMAN_* settings of the caller's, and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FERRYMAN_", "PYTEST"))}
    env["PYTHONPATH"] = str(REPO / "src")
    env["PYTHONUNBUFFERED"] = "1"
    return {**env, **extra}


class Lines:
    """A subprocess's output lines, read in a thread, waited on with a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert proc.stdout is not None
        stream = proc.stdout
        self._thread = threading.Thread(target=lambda: self.lines.extend(stream), daemon=True)
        self._thread.start()

    def text(self) -> str:
        return "".join(self.lines)

    def close(self) -> None:
        self._thread.join(30)


# -- the README -------------------------------------------------------------------------------


def test_every_python_block_of_the_readme_is_a_file_of_its_example() -> None:
    blocks = python_blocks(README)
    assert len(blocks) >= 4
    assert [file_of(b) for b in blocks] == [
        "shop/topics.py",
        "shop/orders.py",
        "shop/billing.py",
        "tests/test_billing.py",
    ]


def test_the_readme_says_the_commands_this_test_runs() -> None:
    commands = "\n".join(bash_blocks(README))
    assert "ferryman run shop.billing:billing" in commands
    assert "python -m shop.orders" in commands
    assert 'pip install -e ".[dev]" && ferryman demo' in commands
    assert 'pip install -e ".[dev]" && python -m pytest' in commands
    assert "export FERRYMAN_BROKER=kafka://127.0.0.1:9092" in commands
    assert "export FERRYMAN_REGISTRY=embedded:$PWD/.ferryman/registry.db" in commands


def two_terminals(project: Path, env: dict[str, str]) -> tuple[str, str]:
    """Terminal 1: ``ferryman run shop.billing:billing``; terminal 2: ``python -m shop.orders``;
    then Ctrl-C in terminal 1. Returns both outputs."""
    ferryman = shutil.which("ferryman")
    assert ferryman, "the `ferryman` command is not on PATH: run the README's set-up command"
    billing = subprocess.Popen(
        [ferryman, "run", "shop.billing:billing"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out = Lines(billing)
    try:
        orders = subprocess.run(
            [sys.executable, "-m", "shop.orders"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert orders.returncode == 0, orders.stdout + orders.stderr
        wait_until(
            lambda: all(f"invoice for o-{n}:" in out.text() for n in (1, 2, 3)),
            120,
            lambda: f"billing's three invoices; it printed:\n{out.text()}",
        )
    finally:
        billing.send_signal(signal.SIGINT)
        try:
            code = billing.wait(60)
        except subprocess.TimeoutExpired:
            billing.kill()
            raise
        finally:
            out.close()
            assert billing.stdout is not None
            billing.stdout.close()
    assert code == 0, out.text()
    return orders.stdout, out.text()


def test_two_services_in_two_terminals_as_written(tmp_path: Path) -> None:
    project = tmp_path / "shop-project"
    write_project(README, project)
    sent, billed = two_terminals(project, clean_env())
    assert sent.splitlines() == [  # murmur2 of the key: the same partitions on Kafka
        "sent o-1 to shop.orders.placed partition 2 offset 0",
        "sent o-2 to shop.orders.placed partition 5 offset 0",
        "sent o-3 to shop.orders.placed partition 5 offset 1",
    ]
    for line in ("invoice for o-1: 12.50 EUR", "invoice for o-2: 9.90 EUR"):
        assert line in billed
    assert (project / ".ferryman" / "broker.db").exists()


@pytest.mark.kafka
def test_the_same_two_services_on_kafka(tmp_path: Path, kafka_bootstrap: str) -> None:
    project = tmp_path / "shop-project"
    write_project(README, project)
    env = clean_env(
        FERRYMAN_BROKER=f"kafka://{kafka_bootstrap}",
        FERRYMAN_REGISTRY=f"embedded:{project}/.ferryman/registry.db",
    )
    sent, billed = two_terminals(project, env)
    assert sent.count("to shop.orders.placed partition") == 3, sent
    assert "invoice for o-3: 41.00 EUR" in billed
    assert not (project / ".ferryman" / "broker.db").exists()


def run_tests(project: Path, files: list[str], venv: Path) -> str:
    """Run a page's test files with pytest, as their user would: ferryman installed (the
    plugin found through its entry point), warnings as errors. Returns pytest's output."""
    python = install_checkout(venv)
    (project / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\npythonpath = ["."]\nfilterwarnings = ["error"]\n'
    )
    run = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *files],
        cwd=project,
        env={k: v for k, v in clean_env().items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def test_the_readmes_tests_pass(tmp_path: Path) -> None:
    project = tmp_path / "shop-project"
    write_project(README, project)
    assert "2 passed" in run_tests(project, ["tests/test_billing.py"], tmp_path / "venv")


# -- the docs ---------------------------------------------------------------------------------


def runnable_pages() -> list[Path]:
    return sorted(p for p in DOCS.glob("*.md") if python_blocks(p))


@pytest.fixture
def fresh_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for var in ("FERRYMAN_BROKER", "FERRYMAN_REGISTRY", "FERRYMAN_DATABASE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if not name.startswith(("ferryman", "sqlalchemy", "_")):
            sys.modules.pop(name, None)


def run_page(page: Path, directory: Path) -> dict[str, Any]:
    """Write the page's files, then run its other blocks in order in one namespace."""
    write_project(page, directory)
    module = types.ModuleType(f"docs_{page.stem}")  # dataclasses look their module up
    sys.modules[module.__name__] = module
    namespace: dict[str, Any] = module.__dict__
    loop = asyncio.new_event_loop()
    try:
        for n, block in enumerate(python_blocks(page)):
            if file_of(block) is not None:
                continue
            code = compile(block, f"{page.name}[{n}]", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            result = eval(code, namespace)
            if inspect.iscoroutine(result):
                loop.run_until_complete(result)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        sys.modules.pop(module.__name__, None)
    return namespace


@pytest.mark.parametrize("page", runnable_pages(), ids=lambda p: p.name)
def test_a_docs_page_runs(
    page: Path, fresh_directory: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    run_page(page, fresh_directory)
    tests = [f for f in write_project(page, fresh_directory) if f.startswith("tests/")]
    if tests:
        out = run_tests(fresh_directory, tests, tmp_path_factory.mktemp("venv") / "venv")
        defined = sum(
            len(re.findall(r"^(?:async )?def test_", (fresh_directory / t).read_text(), re.M))
            for t in tests
        )
        assert f"{defined} passed" in out, out


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_every_docs_block_compiles(page: Path) -> None:
    for n, block in enumerate(python_blocks(page)):
        compile(block, f"{page.name}[{n}]", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def test_every_error_class_has_a_section_in_the_errors_page() -> None:
    import ferryman.errors as errors

    page = (DOCS / "errors.md").read_text()
    classes = [
        name
        for name, obj in vars(errors).items()
        if isinstance(obj, type) and issubclass(obj, errors.FerrymanError)
    ]
    assert len(classes) > 20
    missing = [name for name in classes if f"### `{name}`" not in page]
    assert not missing, f"docs/errors.md has no section for {missing}"
