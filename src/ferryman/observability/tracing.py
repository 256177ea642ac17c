"""W3C trace context on ferryman's records, through OpenTelemetry when it is installed.

``traceparent``/``tracestate`` headers are injected on publish, delete, emit, outbox writes,
requests and replies, and extracted around handlers and responders, so one trace follows a
business flow across services. Spans follow OpenTelemetry's messaging semantic conventions:
``send <topic>`` (PRODUCER) and ``process <topic>`` (CONSUMER), with ``messaging.*``
attributes. Without ``opentelemetry-api`` (``pip install ferryman[otel]``) ``tracing_for``
returns None and callers skip every hook: nothing is paid.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ferryman.records import Headers, Polled, headers_of

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
except ImportError:  # the otel extra is not installed: tracing_for() says None
    trace = None  # type: ignore[assignment]

_PROVIDER_VARIABLE = "OTEL_PYTHON_TRACER_PROVIDER"
"""The environment variable that names a global tracer provider for OpenTelemetry to load."""
_UNKNOWN: Any = object()

TRACE_HEADERS = ("traceparent", "tracestate", "baggage")
"""The W3C headers carried on records (baggage too, when a propagator sets it)."""

MESSAGE_ID = "ferryman.message-id"


def available() -> bool:
    """Whether opentelemetry-api is installed."""
    return trace is not None


def carrier_of(headers: Headers | Sequence[tuple[str, bytes]]) -> dict[str, str]:
    """The trace headers of a record, as the text map OpenTelemetry's propagators read."""
    return {
        k: v.decode("latin-1") for k, v in headers if k in TRACE_HEADERS and isinstance(v, bytes)
    }


class Tracing:
    """Spans and trace headers for one service on one messaging system."""

    def __init__(self, service: str, system: str, provider: Any = None) -> None:
        assert trace is not None
        self.service = service
        self.system = system
        self._provider = provider
        self._tracer = (provider or trace).get_tracer("ferryman")
        self._active = provider is not None
        # A provider named in the environment is loaded by the first get_tracer_provider().
        self._from_environment = _PROVIDER_VARIABLE in os.environ

    def active(self) -> bool:
        """Whether spans are recorded: the service was given a tracer provider, or a global one
        was set up (an SDK). With only the API's no-op provider, hooks skip their spans, so
        having ``opentelemetry-api`` installed costs nothing."""
        if self._active:  # a global provider is set once and for all: active stays so
            return True
        # While none is set, get_tracer_provider() looks the environment up on every call
        # (~2.5 us, a tenth of a send); the API's module global says "none set" at once.
        if getattr(trace, "_TRACER_PROVIDER", _UNKNOWN) is None and not self._from_environment:
            return False
        self._active = not isinstance(
            trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider
        )
        return self._active

    # -- producing ----------------------------------------------------------------------

    def send(
        self, topic: str, headers: Mapping[str, bytes | str] | None
    ) -> Mapping[str, bytes | str] | None:
        """``headers`` plus the context of a new ``send <topic>`` span (a child of the current
        span), which ends at once: the record is queued, its acknowledgement comes later."""
        if not self.active():
            return headers
        with self._tracer.start_as_current_span(
            f"send {topic}",
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": self.system,
                "messaging.operation.type": "send",
                "messaging.operation.name": "send",
                "messaging.destination.name": topic,
                "messaging.client.id": self.service,
            },
        ):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
        if not carrier:
            return headers
        merged: dict[str, bytes | str] = dict(headers or {})
        for k, v in carrier.items():
            merged.setdefault(k, v)
        return merged

    def send_headers(self, topic: str) -> tuple[tuple[str, bytes], ...]:
        """The trace headers of a new ``send <topic>`` span, as record headers (requests)."""
        sent = self.send(topic, None) or {}
        return tuple((k, v.encode("latin-1") if isinstance(v, str) else v) for k, v in sent.items())

    def current_headers(self) -> tuple[tuple[str, bytes], ...]:
        """The current context as record headers (a reply, sent inside its request's span)."""
        if not self.active():
            return ()
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        return tuple((k, v.encode("latin-1")) for k, v in carrier.items())

    # -- consuming ----------------------------------------------------------------------

    @contextlib.contextmanager
    def process(self, group: str, record: Polled) -> Iterator[None]:
        """A ``process <topic>`` span around handling ``record`` (a Row, Polled or Record), a
        child of the context its producer injected."""
        if not self.active():
            yield
            return
        topic, partition, offset, _key, _value, pending, _ts = record
        headers = headers_of(pending)
        parent = propagate.extract(carrier_of(headers))
        attributes: dict[str, Any] = {
            "messaging.system": self.system,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": topic,
            "messaging.destination.partition.id": str(partition),
            "messaging.consumer.group.name": group,
            "messaging.kafka.offset": offset,
        }
        for k, v in headers:
            if k == MESSAGE_ID:
                attributes["messaging.message.id"] = v.decode(errors="replace")
        token = otel_context.attach(parent)
        try:
            with self._tracer.start_as_current_span(
                f"process {topic}", kind=trace.SpanKind.CONSUMER, attributes=attributes
            ):
                yield
        finally:
            otel_context.detach(token)

    @contextlib.contextmanager
    def process_batch(self, group: str, records: Sequence[Polled]) -> Iterator[None]:
        """One ``process <topic>`` span around a batch, linked to each record's context."""
        topic = records[0][0]
        links = []
        for r in records:
            ctx = trace.get_current_span(
                propagate.extract(carrier_of(headers_of(r[5])))
            ).get_span_context()
            if ctx.is_valid:
                links.append(trace.Link(ctx))
        with self._tracer.start_as_current_span(
            f"process {topic}",
            kind=trace.SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.system": self.system,
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.destination.name": topic,
                "messaging.destination.partition.id": str(records[0][1]),
                "messaging.consumer.group.name": group,
                "messaging.batch.message_count": len(records),
            },
        ):
            yield


def tracing_for(
    service: str, system: str, enabled: bool = True, provider: Any = None
) -> Tracing | None:
    """The service's Tracing (through ``provider``, else the global tracer provider), or None
    when switched off or opentelemetry-api is missing."""
    if not enabled or trace is None:
        return None
    return Tracing(service, system, provider)
