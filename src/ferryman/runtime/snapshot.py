"""An entity topic's latest state, read from the log: the last value per key (tombstones drop
the key), decoded, for comparing a mirror with its topic (``ferryman reconcile``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ferryman.broker.base import Admin, Broker
from ferryman.records import TopicPartition
from ferryman.runtime.serde import Serde
from ferryman.topics import Topic

Progress = Callable[[int, int], None]
"""Called with (records read, records to read) as the log is read."""

READ_BATCH = 5000


def latest_state(
    broker: Broker,
    admin: Admin,
    serde: Serde,
    topic: Topic[Any],
    progress: Progress | None = None,
) -> dict[Any, Any]:
    """The last value of each key of ``topic``, up to the end of each partition as it was when
    the read began (records appended meanwhile are not waited for)."""
    bounds = admin.offsets(topic.name)
    ends = {
        TopicPartition(topic.name, p): b.latest for p, b in bounds.items() if b.latest > b.earliest
    }
    total = sum(bounds[tp.partition].latest - bounds[tp.partition].earliest for tp in ends)
    state: dict[Any, Any] = {}
    done = 0
    consumer = broker.consumer(None)
    try:
        consumer.assign(ends)
        left = dict(ends)
        while left:
            for row in consumer.poll(1.0, READ_BATCH).rows:
                tp = TopicPartition(row[0], row[1])
                end = left.get(tp)
                if end is None or row[2] >= end:
                    continue
                message = serde.decode(topic, row)
                if message.value is None:
                    state.pop(message.key, None)
                else:
                    state[message.key] = message.value
                done += 1
                if row[2] + 1 >= end:
                    del left[tp]
            for tp in [tp for tp in left if consumer.position(tp) >= left[tp]]:
                del left[tp]  # compaction left a gap at the end
            if progress is not None:
                progress(done, total)
    finally:
        consumer.close()
    return state
