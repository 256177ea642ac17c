"""ferryman.testing as a user meets it: a project of their own, ferryman installed, pytest run.

The project below is written as a user would write it: a shared topics module, a service, and
tests that ask for the ``ferryman`` fixture without importing the plugin. It runs in a
subprocess, in a virtual environment where this checkout is installed as a distribution, so
pytest finds the plugin through the ``pytest11`` entry point declared in pyproject.toml.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest
from tests.testing.installed import REPO, install_checkout

TOPICS = """
from dataclasses import dataclass

import ferryman as fm


@dataclass
class OrderPlaced:
    order_id: str
    customer_id: int
    total_cents: int


@dataclass
class Invoice:
    order_id: str
    amount_cents: int
    currency: str = "EUR"


order_placed = fm.EventTopic("usershop.orders.placed", OrderPlaced, partition_key="order_id")
invoices = fm.EventTopic("usershop.billing.invoices", Invoice, partition_key="order_id")
"""

BILLING = """
import ferryman as fm

from shop.topics import Invoice, OrderPlaced, invoices, order_placed

billing = fm.Service("billing")


@billing.on(order_placed)
async def invoice(event: OrderPlaced) -> None:
    await billing.emit(invoices, Invoice(event.order_id, event.total_cents))
"""

TESTS = """
from ferryman.testing import assert_sent, call, drain

from shop.topics import Invoice, OrderPlaced, invoices, order_placed


async def test_an_order_is_invoiced(ferryman):
    billing = ferryman.load("shop.billing").billing
    async with ferryman.started(billing):
        await billing.emit(order_placed, OrderPlaced("o-1", 7, 1250))
        await drain()
    assert_sent(invoices, Invoice("o-1", 1250), key="o-1")
    assert [m.value.order_id for m in ferryman.sent(order_placed)] == ["o-1"]


async def test_each_test_has_a_fresh_broker(ferryman):
    billing = ferryman.load("shop.billing").billing
    async with ferryman.started(billing):
        await drain()
    assert ferryman.sent(invoices) == []


async def test_the_handler_called_directly(ferryman):
    shop_billing = ferryman.load("shop.billing")
    await call(shop_billing.invoice, OrderPlaced("o-2", 7, 990))
    ferryman.assert_sent(invoices, {"order_id": "o-2", "amount_cents": 990})


async def test_wrong_amount(ferryman):
    billing = ferryman.load("shop.billing").billing
    async with ferryman.started(billing):
        await billing.emit(order_placed, OrderPlaced("o-1", 7, 1250))
        await billing.emit(order_placed, OrderPlaced("o-9", 8, 40))
        await drain()
    assert_sent(invoices, Invoice("o-1", 1200, currency="USD"), key="o-1")
"""


@pytest.fixture(scope="module")
def user_project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("user")
    python = install_checkout(root / "venv")
    project = root / "shop-project"
    (project / "shop").mkdir(parents=True)
    (project / "tests").mkdir()
    (project / "shop" / "__init__.py").write_text("")
    (project / "shop" / "topics.py").write_text(textwrap.dedent(TOPICS))
    (project / "shop" / "billing.py").write_text(textwrap.dedent(BILLING))
    (project / "tests" / "test_billing.py").write_text(textwrap.dedent(TESTS))
    (project / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\npythonpath = ["."]\nfilterwarnings = ["error"]\n'
    )
    return python, project


def _pytest(
    python: Path, project: Path, *args: str, **settings: str
) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("FERRYMAN_", "PYTHON", "PYTEST"))
    }
    env.update(settings)
    return subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_the_plugin_is_found_through_its_entry_point(user_project: tuple[Path, Path]) -> None:
    python, project = user_project
    found = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m, ferryman; "
            "print([e.value for e in m.entry_points(group='pytest11') if e.name == 'ferryman']);"
            "print(ferryman.__file__)",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
    ).stdout.splitlines()
    assert found[0] == "['ferryman.testing.plugin']"
    assert found[1] == str(REPO / "src" / "ferryman" / "__init__.py")


def test_a_users_tests_pass_without_importing_the_plugin(user_project: tuple[Path, Path]) -> None:
    python, project = user_project
    run = _pytest(python, project, "-k", "not wrong_amount")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 passed, 1 deselected" in run.stdout
    assert not (project / ".ferryman").exists()  # every broker lived in the test's tmp_path


def test_a_failing_assert_sent_shows_a_readable_diff(user_project: tuple[Path, Path]) -> None:
    python, project = user_project
    run = _pytest(python, project, "-k", "wrong_amount")
    assert run.returncode == 1, run.stdout + run.stderr
    out = run.stdout
    expected = [
        "no record sent to 'usershop.billing.invoices' matches "
        "Invoice(order_id='o-1', amount_cents=1200, currency='USD') with key 'o-1'",
        "2 record(s) were sent to 'usershop.billing.invoices'; the closest, at partition",
        "Invoice(order_id='o-1', amount_cents=1250, currency='EUR')",
        "differs in:",
        "amount_cents: expected 1200, sent 1250",
        "currency: expected 'USD', sent 'EUR'",
    ]
    for line in expected:
        assert line in out, f"{line!r} not in the output:\n{out}"
    assert "o-9" not in out.split("differs in:")[0].split("the closest")[1]


@pytest.mark.kafka
def test_the_same_tests_run_on_kafka(user_project: tuple[Path, Path], kafka_bootstrap: str) -> None:
    python, project = user_project
    run = _pytest(
        python, project, "-k", "not wrong_amount", FERRYMAN_BROKER=f"kafka://{kafka_bootstrap}"
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 passed, 1 deselected" in run.stdout
