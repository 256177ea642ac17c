"""Fixtures: the runtime tests' ``env`` (embedded always, Kafka when available), and an
OpenTelemetry SDK tracer provider per test, exporting to memory. The provider is handed to the
services (``ServiceConfig(tracer_provider=...)``), never set globally: a global provider would
trace every later test of the session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tests.runtime.conftest import env

__all__ = ["Tracer", "env", "tracer"]


class Tracer(NamedTuple):
    provider: TracerProvider
    spans: InMemorySpanExporter


@pytest.fixture
def tracer() -> Iterator[Tracer]:
    """A tracer provider of this test's own and the spans it finished."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Tracer(provider, exporter)
    provider.shutdown()
