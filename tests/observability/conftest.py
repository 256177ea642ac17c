"""Fixtures: the runtime tests' ``env`` (embedded always, Kafka when available), and one
OpenTelemetry SDK tracer provider for the process, exporting to memory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tests.runtime.conftest import env

__all__ = ["env", "spans"]

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="session")
def _provider() -> TracerProvider:
    """The process's tracer provider: OpenTelemetry lets it be set once."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    trace.set_tracer_provider(provider)
    return provider


@pytest.fixture
def spans(_provider: TracerProvider) -> Iterator[InMemorySpanExporter]:
    """The in-memory exporter, emptied for this test."""
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()
