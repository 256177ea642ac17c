"""Small helpers for the contract suite: produce, consume, poll several members together.

Every wait goes through ``tests.waiting.wait_until``: a loop on a condition that gives up, with
a description of what it last saw, when its deadline passes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence

from ferryman.broker.base import Consumer, Producer
from ferryman.records import Headers, Record, RecordMetadata, TopicPartition
from ferryman.testing.waiting import wait_until

POLL = 0.1
"""How long one poll may block inside a wait loop; short so several members can take turns."""


def produce_n(
    producer: Producer,
    topic: str,
    n: int,
    *,
    key: Callable[[int], bytes | None] | None = None,
    value: Callable[[int], bytes | None] = lambda i: b"value-%d" % i,
    partition: int | None = None,
    headers: Headers = (),
    timestamp: Callable[[int], int | None] | None = None,
) -> list[RecordMetadata]:
    """Send ``n`` records, wait for every acknowledgement and return them in send order."""
    futures = [
        producer.send(
            topic,
            value(i),
            key=key(i) if key else None,
            partition=partition,
            headers=headers,
            timestamp=timestamp(i) if timestamp else None,
        )
        for i in range(n)
    ]
    assert producer.flush(30.0) == 0, "records still queued after flush"
    return [f.result(timeout=30.0) for f in futures]


def consume_all(consumer: Consumer, n: int, timeout: float, max_records: int = 500) -> list[Record]:
    """Poll until at least ``n`` records arrived (all of them returned), or fail at the deadline."""
    got: list[Record] = []

    def enough() -> bool:
        got.extend(consumer.poll(POLL, max_records))
        return len(got) >= n

    wait_until(enough, timeout, lambda: f"{len(got)} of {n} records")
    return got


def poll_together(
    consumers: Sequence[Consumer],
    until: Callable[[], bool],
    timeout: float,
    describe: Callable[[], object] | str = "",
) -> list[list[Record]]:
    """Poll several members in turn (a group only settles when all of them poll) until ``until``.

    Returns the records each one received, by position in ``consumers``.
    """
    got: list[list[Record]] = [[] for _ in consumers]

    def step() -> bool:
        for i, c in enumerate(consumers):
            got[i].extend(c.poll(POLL))
        return until()

    wait_until(step, timeout, describe)
    return got


def by_partition(records: Iterable[Record]) -> dict[int, list[Record]]:
    """Records grouped by partition, each list in the order received."""
    out: dict[int, list[Record]] = {}
    for r in records:
        out.setdefault(r.partition, []).append(r)
    return out


def partitions_of(topic: str, n: int) -> set[TopicPartition]:
    return {TopicPartition(topic, p) for p in range(n)}


def assert_increasing(offsets: Sequence[int], what: str) -> None:
    assert all(a < b for a, b in itertools.pairwise(offsets)), (
        f"{what}: offsets out of order: {list(offsets)[:50]}"
    )
