"""A service's Prometheus metrics: counters bumped by the runtime, gauges read at scrape time.

Every Service has a ``Metrics`` (or ``NoMetrics`` with ``ServiceConfig(metrics=False)``) in a
``CollectorRegistry`` of its own, so several services in one process, and tests, never collide;
``ferryman run --http-port`` serves them all on one ``/metrics`` (observability/http.py).

The hot path costs a dict look-up and a counter increment per run of records (up to 64), not
per record: handler time is measured per run and each record of a one-at-a-time run is counted
with the run's mean. Lag, outbox and republisher figures are asked of the broker and the
database when Prometheus scrapes, through ``Probes`` (docs/operating.md lists every metric).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ferryman.records import TopicPartition

log = logging.getLogger("ferryman.metrics")

HANDLER_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
"""Seconds: handlers range from sub-millisecond counters to database transactions."""
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
"""Seconds of a request's round trip, from send to reply."""


class PartitionLag(NamedTuple):
    """Records of one partition not yet committed by the group."""

    group: str
    partition: TopicPartition
    records: int


class MirrorFigures(NamedTuple):
    """One mirror's lag (records not applied; seconds since the last applied record's time)."""

    topic: str
    records: int
    seconds: float | None


class OutboxFigures(NamedTuple):
    """Rows waiting in the outbox, and how long the oldest has waited since its commit."""

    rows: int
    oldest_seconds: float


class Probes(Protocol):
    """What a scrape asks of a service: each may be slow (a broker or database round trip)."""

    def consumer_lag(self) -> Sequence[PartitionLag]:
        """The group's lag on the partitions this instance owns."""
        ...

    def mirror_lag(self) -> Sequence[MirrorFigures]: ...

    def outbox(self) -> OutboxFigures | None:
        """None when the service has no outbox."""
        ...

    def pending_keys(self) -> Mapping[str, int]:
        """Changed keys waiting for each joined table's republisher, by topic."""
        ...


class Observer(Protocol):
    """The hooks the runtime, rpc and service call; ``NoMetrics`` does nothing."""

    def consumed(self, group: str, tp: TopicPartition, rows: Sequence[Any]) -> None: ...
    def dead_lettered(self, group: str, topic: str, partition: int) -> None: ...
    def retried(self, group: str, tp: TopicPartition) -> None: ...
    def handler_run(self, group: str, topic: str, seconds: float, calls: int) -> None: ...
    def produced(self, topic: str) -> None: ...
    def request_answered(self, topic: str, seconds: float, error: bool) -> None: ...
    def request_timed_out(self, topic: str) -> None: ...
    def late_reply(self, topic: str) -> None: ...
    def assigned(self, group: str, partitions: Iterable[TopicPartition]) -> None: ...
    def revoked(self, group: str, partitions: Iterable[TopicPartition]) -> None: ...
    def owned(self, group: str) -> frozenset[TopicPartition]: ...
    def mirror_applied(self, topic: str, table: str, records: int) -> None: ...


class NoMetrics:
    """Metrics switched off: every hook is a no-op."""

    registry: CollectorRegistry | None = None

    def consumed(self, group: str, tp: TopicPartition, rows: Sequence[Any]) -> None:
        pass

    def dead_lettered(self, group: str, topic: str, partition: int) -> None:
        pass

    def retried(self, group: str, tp: TopicPartition) -> None:
        pass

    def handler_run(self, group: str, topic: str, seconds: float, calls: int) -> None:
        pass

    def produced(self, topic: str) -> None:
        pass

    def request_answered(self, topic: str, seconds: float, error: bool) -> None:
        pass

    def request_timed_out(self, topic: str) -> None:
        pass

    def late_reply(self, topic: str) -> None:
        pass

    def assigned(self, group: str, partitions: Iterable[TopicPartition]) -> None:
        pass

    def revoked(self, group: str, partitions: Iterable[TopicPartition]) -> None:
        pass

    def owned(self, group: str) -> frozenset[TopicPartition]:
        return frozenset()

    def mirror_applied(self, topic: str, table: str, records: int) -> None:
        pass


NO_METRICS = NoMetrics()


class _RunHistogram(Collector):
    """A histogram that takes a run's duration for ``calls`` calls at once (each at the mean):
    one bisect and a few additions per run instead of one ``observe`` per record."""

    def __init__(self, name: str, doc: str, labels: Sequence[str], buckets: Sequence[float]):
        self._name, self._doc, self._labels = name, doc, list(labels)
        self._bounds = list(buckets)
        self._series: dict[tuple[str, ...], list[float]] = {}  # bucket counts..., sum
        self._lock = threading.Lock()

    def observe(self, labels: tuple[str, ...], seconds: float, calls: int) -> None:
        if calls <= 0:
            return
        i = bisect_left(self._bounds, seconds / calls)
        with self._lock:
            series = self._series.get(labels)
            if series is None:
                series = self._series[labels] = [0.0] * (len(self._bounds) + 2)
            series[i] += calls
            series[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self._name, self._doc, labels=self._labels)
        with self._lock:
            series = {k: list(v) for k, v in self._series.items()}
        for labels, counts in series.items():
            running = 0.0
            buckets: list[tuple[str, float]] = []
            for bound, n in zip(self._bounds, counts, strict=False):
                running += n
                buckets.append((_le(bound), running))
            running += counts[len(self._bounds)]
            buckets.append(("+Inf", running))
            family.add_metric(list(labels), buckets, counts[-1])
        yield family


class _SendCounter(Collector):
    """A counter per topic bumped on every send: ``next()`` of an ``itertools.count`` is one C
    call and atomic under the GIL, where a prometheus Counter takes a lock (~1 us a record)."""

    def __init__(self, name: str, doc: str, service: str) -> None:
        self._name, self._doc, self._service = name, doc, service
        self.counts: dict[str, itertools.count[int]] = {}
        self._lock = threading.Lock()

    def count(self, topic: str) -> itertools.count[int]:
        """The count of ``topic`` (made on its first send)."""
        with self._lock:
            return self.counts.setdefault(topic, itertools.count())

    def describe(self) -> list[Metric]:
        return [CounterMetricFamily(self._name, self._doc, labels=["service", "topic"])]

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self._name, self._doc, labels=["service", "topic"])
        for topic, count in list(self.counts.items()):
            # repr is "count(n)" after n records: the value, read without bumping it
            family.add_metric([self._service, topic], int(repr(count)[6:-1]))
        yield family


def _le(bound: float) -> str:
    return repr(float(bound))


class Metrics:
    """Prometheus metrics of service ``service``, in ``registry`` (default: a new one)."""

    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.service = service
        self.registry = registry if registry is not None else CollectorRegistry()
        self.probes: Probes | None = None
        """Set by the service: what scrapes ask for lag, outbox and republisher figures."""
        r = self.registry
        where = ["service", "group", "topic", "partition"]
        self._consumed = Counter(
            "ferryman_records_consumed",
            "Records a consumer group finished with (handled or dead-lettered).",
            where,
            registry=r,
        )
        self._dead = Counter(
            "ferryman_records_dead_lettered",
            "Records sent to <topic>.dlq after their retries (or at once when undecodable).",
            where,
            registry=r,
        )
        self._retries = Counter(
            "ferryman_handler_retries",
            "Retries of failed handler runs, and waits for an unreachable schema registry.",
            where,
            registry=r,
        )
        self._produced = _SendCounter(
            "ferryman_records_produced",
            "Records sent by publish, delete and emit (the outbox relay's are not counted).",
            service,
        )
        r.register(self._produced)
        self._handler = _RunHistogram(
            "ferryman_handler_duration_seconds",
            "Seconds per handler call (batch handlers: per batch; one-at-a-time handlers: the "
            "mean of each run of up to 64 records).",
            ["service", "group", "topic"],
            HANDLER_BUCKETS,
        )
        r.register(self._handler)
        self._request = Histogram(
            "ferryman_request_duration_seconds",
            "Seconds from sending a request to its reply (outcome: reply or error).",
            ["service", "topic", "outcome"],
            registry=r,
            buckets=REQUEST_BUCKETS,
        )
        self._timeouts = Counter(
            "ferryman_request_timeouts",
            "Requests that got no reply within their timeout.",
            ["service", "topic"],
            registry=r,
        )
        self._remote_errors = Counter(
            "ferryman_request_remote_errors",
            "Requests whose responder raised (RemoteError).",
            ["service", "topic"],
            registry=r,
        )
        self._late = Counter(
            "ferryman_late_replies",
            "Replies that arrived after their request timed out (dropped).",
            ["service", "topic"],
            registry=r,
        )
        self._mirror_applied = Counter(
            "ferryman_mirror_records_applied",
            "Records of an entity topic applied to a mirror or joined table (committed with "
            "their offsets; redeliveries skipped by offset are not counted).",
            ["service", "topic", "table"],
            registry=r,
        )
        self._assigned = Gauge(
            "ferryman_partitions_assigned",
            "Partitions this instance owns in its consumer group.",
            ["service", "group"],
            registry=r,
        )
        r.register(_Scraped(self))
        self._children: dict[tuple[Any, ...], Any] = {}
        self._last_timestamp: dict[tuple[str, TopicPartition], int] = {}
        self._owned: dict[str, set[TopicPartition]] = {}
        self._owned_lock = threading.Lock()

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # -- hooks (runtime, rpc, service) ------------------------------------------------------

    def consumed(self, group: str, tp: TopicPartition, rows: Sequence[Any]) -> None:
        """A run of ``rows`` (records as rows, in order) of ``tp`` is done."""
        if not rows:
            return
        key = (self._consumed, group, tp)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._consumed.labels(
                self.service, group, tp.topic, str(tp.partition)
            )
        child.inc(len(rows))
        self._last_timestamp[group, tp] = rows[-1][6]

    def dead_lettered(self, group: str, topic: str, partition: int) -> None:
        self._child(self._dead, self.service, group, topic, str(partition)).inc()

    def retried(self, group: str, tp: TopicPartition) -> None:
        self._child(self._retries, self.service, group, tp.topic, str(tp.partition)).inc()

    def handler_run(self, group: str, topic: str, seconds: float, calls: int) -> None:
        self._handler.observe((self.service, group, topic), seconds, calls)

    def produced(self, topic: str) -> None:
        count = self._produced.counts.get(topic)
        next(count if count is not None else self._produced.count(topic))

    def mirror_applied(self, topic: str, table: str, records: int) -> None:
        if records:
            self._child(self._mirror_applied, self.service, topic, table).inc(records)

    def request_answered(self, topic: str, seconds: float, error: bool) -> None:
        outcome = "error" if error else "reply"
        self._child(self._request, self.service, topic, outcome).observe(seconds)
        if error:
            self._child(self._remote_errors, self.service, topic).inc()

    def request_timed_out(self, topic: str) -> None:
        self._child(self._timeouts, self.service, topic).inc()

    def late_reply(self, topic: str) -> None:
        self._child(self._late, self.service, topic).inc()

    def assigned(self, group: str, partitions: Iterable[TopicPartition]) -> None:
        with self._owned_lock:
            owned = self._owned.setdefault(group, set())
            owned.update(partitions)
            self._assigned.labels(self.service, group).set(len(owned))

    def revoked(self, group: str, partitions: Iterable[TopicPartition]) -> None:
        with self._owned_lock:
            owned = self._owned.setdefault(group, set())
            owned.difference_update(partitions)
            self._assigned.labels(self.service, group).set(len(owned))

    def owned(self, group: str) -> frozenset[TopicPartition]:
        """The partitions this instance owns in ``group`` (readiness, lag)."""
        with self._owned_lock:
            return frozenset(self._owned.get(group, ()))

    def last_timestamp(self, group: str, tp: TopicPartition) -> int | None:
        """Milliseconds: the timestamp of the last record ``group`` finished on ``tp``."""
        return self._last_timestamp.get((group, tp))


class _Scraped(Collector):
    """Gauges computed when Prometheus scrapes: lag, mirror lag, outbox, pending keys."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> list[Metric]:
        return []  # the families depend on the service; none is known before a scrape

    def collect(self) -> Iterator[Metric]:
        m = self._metrics
        probes = m.probes
        if probes is None:
            return
        service = m.service
        where = ["service", "group", "topic", "partition"]
        records = GaugeMetricFamily(
            "ferryman_consumer_lag_records",
            "Records not yet committed by the group, on the partitions this instance owns.",
            labels=where,
        )
        seconds = GaugeMetricFamily(
            "ferryman_consumer_lag_seconds",
            "Seconds since the timestamp of the last record finished (0 when caught up).",
            labels=where,
        )
        now = time.time()
        for lag in _asked(probes.consumer_lag, ()):
            labels = [service, lag.group, lag.partition.topic, str(lag.partition.partition)]
            records.add_metric(labels, lag.records)
            last = m.last_timestamp(lag.group, lag.partition)
            if lag.records == 0:
                seconds.add_metric(labels, 0.0)
            elif last is not None:
                seconds.add_metric(labels, max(0.0, now - last / 1000))
        yield records
        yield seconds
        mirror_records = GaugeMetricFamily(
            "ferryman_mirror_lag_records",
            "Records of an entity topic not yet applied to the service's mirror table.",
            labels=["service", "topic"],
        )
        mirror_seconds = GaugeMetricFamily(
            "ferryman_mirror_lag_seconds",
            "Seconds since the timestamp of the mirror's last applied record (0 when caught up).",
            labels=["service", "topic"],
        )
        for mirror in _asked(probes.mirror_lag, ()):
            mirror_records.add_metric([service, mirror.topic], mirror.records)
            if mirror.seconds is not None:
                mirror_seconds.add_metric([service, mirror.topic], mirror.seconds)
        yield mirror_records
        yield mirror_seconds
        outbox = _asked(probes.outbox, None)
        if outbox is not None:
            yield _gauge(
                "ferryman_outbox_backlog_rows",
                "Rows committed to the outbox and not yet published by a relay.",
                service,
                outbox.rows,
            )
            yield _gauge(
                "ferryman_outbox_oldest_seconds",
                "Seconds the oldest unpublished outbox row has waited since its commit: the "
                "current delay from commit to publish.",
                service,
                outbox.oldest_seconds,
            )
        pending = _asked(probes.pending_keys, {})
        if pending:
            family = GaugeMetricFamily(
                "ferryman_republisher_pending_keys",
                "Changed keys of a joined table waiting for its republisher.",
                labels=["service", "topic"],
            )
            for topic, n in sorted(pending.items()):
                family.add_metric([service, topic], n)
            yield family


def _gauge(name: str, doc: str, service: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=["service"])
    family.add_metric([service], value)
    return family


def _asked(probe: Any, default: Any) -> Any:
    """``probe()``, or ``default`` when it fails (a scrape shows what it can; the failure is
    the health endpoint's to report)."""
    try:
        return probe()
    except Exception as exc:
        log.debug("metrics probe %s failed: %r", getattr(probe, "__name__", probe), exc)
        return default
