"""Test-wide fixtures: where the real services are, and the rule that in CI they must be.

Tests needing a real service (Kafka, PostgreSQL) ask for a fixture below. Without the service
they skip with a reason; with ``CI=true`` the same absence is a failure, never a silent skip.

- ``FERRYMAN_TEST_KAFKA``: bootstrap servers of a running Kafka (``scripts/kafka.sh start``
  prints the value to export).
- ``FERRYMAN_TEST_PROMETHEUS`` and ``FERRYMAN_TEST_PROMETHEUS_TARGETS``: a running Prometheus
  and the directory it discovers scrape targets in (``scripts/prometheus.sh start``).
- ``FERRYMAN_TEST_POSTGRES``: an SQLAlchemy URL of a running PostgreSQL
  (``scripts/postgres.sh start`` prints the value to export). ``database_url`` runs a test
  on SQLite and on PostgreSQL, each run in an empty database of its own.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from tests.registry_server import RegistryServer


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_service(env_var: str, what: str, how: str) -> str:
    """The value of ``env_var``; skip (locally) or fail (in CI) when it is not set."""
    value = os.environ.get(env_var, "").strip()
    if value:
        return value
    reason = f"{what} is not available: set {env_var} ({how})"
    if in_ci():
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """Bootstrap servers of a running single-broker Kafka."""
    return require_service(
        "FERRYMAN_TEST_KAFKA",
        "Apache Kafka",
        "run `scripts/kafka.sh start` and export what it prints",
    )


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """SQLAlchemy URL (``postgresql+psycopg://...``) of a running PostgreSQL database."""
    return require_service(
        "FERRYMAN_TEST_POSTGRES",
        "PostgreSQL",
        "run `scripts/postgres.sh start` and export what it prints",
    )


@pytest.fixture(scope="session")
def prometheus() -> tuple[str, Path]:
    """A running Prometheus (its URL) and the directory of its file-discovered targets."""
    url = require_service(
        "FERRYMAN_TEST_PROMETHEUS",
        "Prometheus",
        "run `scripts/prometheus.sh start` and export what it prints",
    )
    targets = require_service(
        "FERRYMAN_TEST_PROMETHEUS_TARGETS",
        "Prometheus's target directory",
        "run `scripts/prometheus.sh start` and export what it prints",
    )
    return url.rstrip("/"), Path(targets)


@pytest.fixture(scope="session")
def postgres_admin(postgres_url: str) -> Iterator[Engine]:
    """An engine on the test server for creating and dropping the per-test schemas."""
    engine = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An SQLAlchemy URL of an empty database, once per backend: an SQLite file, or a fresh
    PostgreSQL schema of this test's own (the URL sets the search_path), dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'service.db'}"
        return
    admin: Engine = request.getfixturevalue("postgres_admin")
    server: str = request.getfixturevalue("postgres_url")
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(server).update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def registry_server(tmp_path: Path) -> Iterator[RegistryServer]:
    """A running `ferryman registry serve` on a registry file of this test's own; it can be
    stopped and started again on the same port (``stop()``, ``start()``)."""
    server = RegistryServer(tmp_path / "served-registry.db").start()
    try:
        yield server
    finally:
        server.stop()


def pytest_report_header() -> list[str]:
    lines = []
    kafka = os.environ.get("FERRYMAN_TEST_KAFKA", "").strip()
    if kafka:
        lines.append(f"Apache Kafka: {kafka} (tests marked kafka run against it)")
    else:
        lines.append(
            "Apache Kafka: none (FERRYMAN_TEST_KAFKA unset; tests marked kafka skip, or fail in CI)"
        )
    postgres = os.environ.get("FERRYMAN_TEST_POSTGRES", "").strip()
    if postgres:
        lines.append(f"PostgreSQL: {postgres} (tests marked postgres run against it)")
    else:
        lines.append(
            "PostgreSQL: none (FERRYMAN_TEST_POSTGRES unset; tests marked postgres skip, or fail "
            "in CI)"
        )
    prometheus = os.environ.get("FERRYMAN_TEST_PROMETHEUS", "").strip()
    lines.append(
        f"Prometheus: {prometheus} (tests marked prometheus run against it)"
        if prometheus
        else "Prometheus: none (FERRYMAN_TEST_PROMETHEUS unset; tests marked prometheus skip, "
        "or fail in CI)"
    )
    return lines


# marker -> what the summary calls the service, and the node ids of the tests that need it
_ON_SERVICE: dict[str, tuple[str, set[str]]] = {
    "kafka": ("Apache Kafka", set()),
    "postgres": ("PostgreSQL", set()),
    "prometheus": ("Prometheus", set()),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for marker, (_, ids) in _ON_SERVICE.items():
        ids.update(item.nodeid for item in items if item.get_closest_marker(marker))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say how the tests on real services went, so that a run shows they ran rather than skipped."""
    for marker, (service, ids) in _ON_SERVICE.items():
        counts: dict[str, int] = {}
        for outcome in ("passed", "failed", "error", "skipped"):
            for report in terminalreporter.stats.get(outcome, []):
                if report.nodeid in ids and (report.when == "call" or outcome != "passed"):
                    counts[outcome] = counts.get(outcome, 0) + 1
        if counts:
            said = ", ".join(f"{n} {outcome}" for outcome, n in counts.items())
            terminalreporter.write_line(f"tests on {service} (marked {marker}): {said}")


def pytest_configure(config: pytest.Config) -> None:
    """The ferryman.testing plugin, for this repository's own tests of it: pip registers it
    through the ``pytest11`` entry point; a checkout run without installing gets it here."""
    import ferryman.testing.plugin as plugin

    if not config.pluginmanager.is_registered(plugin):
        config.pluginmanager.register(plugin, "ferryman")
